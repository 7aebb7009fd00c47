"""The methods the package ships, one folder each (proxyclip/methods/<name>/); the engine (proxyclip.method) finds
them here and under the `proxyclip.methods` entry-point group (proxyclip/method/last_block/discovery.py) and
names none of them."""
