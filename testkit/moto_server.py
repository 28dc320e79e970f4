"""moto's server (a DynamoDB-API implementation from PyPI), with one lookup made faster,
answering only clients on this machine.

moto 5 answers a Query on a table's own key by sorting every item of the table and
filtering them by partition (Table.all_items, on every call): O(n log n) in the table's
size, ~50 ms per Query at a few thousand items. This launcher narrows that one case to
the partition's own items, which moto already keeps in a dict by partition key, so the
results are the same items in the same order. Index queries, scans and everything else
are moto's own code. If moto's internals differ from what this expects, it says so and
runs moto unchanged.

moto answers any web page a browser on this machine has open (flask-cors allows every
Origin), so a page elsewhere could read or write the local tables and secrets. This
launcher refuses, as the playground does, a request with an Origin header (only browsers
send one; no AWS SDK does, and moto serves no page of its own) or a Host that is not a
loopback name (DNS rebinding).

Usage: python moto_server.py -H 127.0.0.1 -p PORT   (the arguments of moto.server)
"""
import inspect
import sys
import threading


def narrow_base_table_queries():
    from moto.dynamodb.models.table import Table

    original_query = Table.query
    original_all_items = Table.all_items
    signature = inspect.signature(original_query)
    if not {"hash_key", "index_name"} <= set(signature.parameters) or not hasattr(Table, "all_items"):
        print("moto_server: unexpected moto internals; running moto unchanged", file=sys.stderr)
        return
    local = threading.local()  # moto's server is threaded: one override per request thread

    def all_items(self):
        override = getattr(local, "partition", None)
        if override is not None and override[0] is self:
            partition = self.items.get(override[1])  # .get: never adds a key to the defaultdict
            if not partition:
                return []
            return sorted(partition.values(), key=lambda item: item.range_key)
        return original_all_items(self)

    def query(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        base_table = not bound.arguments.get("index_name") and self.range_key_attr
        hash_key = bound.arguments.get("hash_key")
        if base_table and hash_key is not None:
            local.partition = (self, hash_key)
        try:
            return original_query(self, *args, **kwargs)
        finally:
            local.partition = None

    Table.all_items = all_items
    Table.query = query


LOOPBACK_NAMES = {"127.0.0.1", "localhost", "[::1]"}


def refuse_browsers():
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    original_call = DomainDispatcherApplication.__call__

    def guarded(self, environ, start_response):
        host = environ.get("HTTP_HOST", "")
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if "HTTP_ORIGIN" in environ or name not in LOOPBACK_NAMES:
            start_response("403 Forbidden", [("Content-Type", "text/plain")])
            return [b"refused: this local stand-in answers only clients on this machine, not browsers"]
        return original_call(self, environ, start_response)

    DomainDispatcherApplication.__call__ = guarded


if __name__ == "__main__":
    narrow_base_table_queries()
    refuse_browsers()
    from moto.server import main

    main(sys.argv[1:])
