"""An independent SQL Server client against the local TDS server: pymssql
(FreeTDS inside), with its defaults, as an application would use it. Run by
testkit/tests/independent_clients.rs; prints one JSON line with what it saw.

  python pymssql-client.py <host> <port> <user> <password> <database> <ca.pem|-> <student> <page.sql> [tds version]

With a CA, FreeTDS requires TLS and checks the server's certificate against
that CA (a freetds.conf written for the run, FREETDSCONF); with "-" the
session is plaintext.
"""

import json
import os
import re
import sys
import tempfile

host, port, user, password, database, ca, student, page_path = sys.argv[1:9]
tds_version = sys.argv[9] if len(sys.argv) > 9 else None  # None: pymssql's default

conf_dir = tempfile.mkdtemp(prefix="pymssql-client-")
conf = os.path.join(conf_dir, "freetds.conf")
with open(conf, "w") as f:
    f.write("[global]\n")
    if ca == "-":
        f.write("\tencryption = off\n")
    else:
        f.write("\tencryption = require\n\tca file = %s\n" % ca)
os.environ["FREETDSCONF"] = conf

import pymssql  # noqa: E402  (after FREETDSCONF: FreeTDS reads it when it loads)

# The product's page query, its @P1..@P7 written as pymssql's pyformat
# placeholders: pymssql sends the values as literals in the batch.
with open(page_path) as f:
    page_sql = re.sub(r"@P(\d)", r"%(P\1)s", f.read())


def connect(pw):
    return pymssql.connect(
        server=host, port=int(port), user=user, password=pw, database=database,
        login_timeout=5, timeout=5, tds_version=tds_version,
    )


def scalar(cursor):
    row = cursor.fetchone()
    cursor.fetchall()
    return row[0] if row else None


def error_number(err):
    # pymssql's errors carry (number, message), at the top or one level down.
    args = err.args[0] if err.args and isinstance(err.args[0], tuple) else err.args
    return args[0] if args and isinstance(args[0], int) else repr(err)


out = {"pymssql": pymssql.__version__, "freetds": pymssql.get_dbversion()}
try:
    conn = connect(password)
    out["connected"] = True
    out["tdsVersion"] = conn._conn.tds_version  # the version LOGINACK reported
    cur = conn.cursor()
    cur.execute("SELECT 1")
    out["select1"] = scalar(cur)
    cur.execute(page_sql, {"P1": 4, "P2": student, "P3": None, "P4": None, "P5": None,
                           "P6": None, "P7": None})
    page = cur.fetchall()
    out["page"] = [r[0] for r in page]
    # Before TDS 7.3 there are no date types: the server sends dates as text.
    out["pageRows"] = [[r[0], r[1], r[2], getattr(r[3], "isoformat", lambda: r[3])()]
                       for r in page]
    cur.execute("SELECT DB_NAME() AS db, @@TRANCOUNT AS trancount")
    out["second"] = scalar(cur)
    conn.commit()
    # A reset between users: sp_reset_connection, called by name (an RPC).
    cur.callproc("sp_reset_connection")
    cur.execute("SELECT 1 AS after_reset")
    out["afterReset"] = scalar(cur)
    try:
        cur.execute("SELECT * FROM dbo.no_such_table")
        out["statementError"] = "no error: %r" % cur.fetchall()
    except pymssql.Error as err:
        out["statementError"] = error_number(err)
    cur.execute("SELECT 2 AS two")
    out["recovered"] = scalar(cur)
    conn.close()
    try:
        connect("not-the-password").close()
        out["wrongPassword"] = "logged in"
    except pymssql.Error as err:
        out["wrongPassword"] = error_number(err)
except Exception as err:  # reported, not raised: the test reads the JSON line
    out["error"] = repr(err)
print(json.dumps(out, default=str))
