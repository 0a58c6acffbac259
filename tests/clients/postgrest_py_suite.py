"""Drives litecar's table API through supabase's PostgREST client for Python (PyPI `postgrest`) and checks
every answer against the same query run directly on the SQLite file, and the whole table after each write.

Usage: postgrest_py_suite.py BASE_URL TOKEN DB_PATH. Prints one line per operation; exits 1 on the first
difference. Where PostgREST's behaviour is not obvious, the PostgREST documentation section is cited.
"""

import sqlite3
import sys

from postgrest import SyncPostgrestClient
from postgrest.exceptions import APIError
from postgrest.types import CountMethod, ReturnMethod

URL, TOKEN, DB = sys.argv[1:4]
client = SyncPostgrestClient(URL, headers={"Authorization": f"Bearer {TOKEN}"})
db = sqlite3.connect(DB)
db.row_factory = sqlite3.Row
checked = 0


def sql(query, *args):
    return [dict(row) for row in db.execute(query, args)]


def same(what, got, want):
    global checked
    checked += 1
    if got != want:
        print(f"DIFFERENT {what}\n  api: {got!r}\n  sql: {want!r}", file=sys.stderr)
        sys.exit(1)
    print(f"ok {what}")


def table_matches(name, after):
    rows = client.from_(name).select("*").order("id").execute().data
    same(f"{name} after {after}", rows, sql(f'SELECT * FROM "{name}" ORDER BY id'))


def error_code(what, run):
    try:
        run()
    except APIError as error:
        return error.code
    print(f"DIFFERENT {what}: no error", file=sys.stderr)
    sys.exit(1)


customers = lambda: client.from_("customers")  # noqa: E731
orders = lambda: client.from_("orders")  # noqa: E731

# Reads: every filter the client offers that SQLite can serve.
same("select *", customers().select("*").order("id").execute().data, sql("SELECT * FROM customers ORDER BY id"))
for name, build, query, args in [
    ("eq", lambda q: q.eq("tier", "gold"), "tier = ?", ["gold"]),
    ("neq", lambda q: q.neq("tier", "gold"), "tier <> ?", ["gold"]),
    ("gt", lambda q: q.gt("score", 2), "score > ?", [2]),
    ("gte", lambda q: q.gte("score", 2.5), "score >= ?", [2.5]),
    ("lt", lambda q: q.lt("id", 3), "id < ?", [3]),
    ("lte", lambda q: q.lte("id", 3), "id <= ?", [3]),
    ("like", lambda q: q.like("name", "%an%"), "name GLOB ?", ["*an*"]),
    ("ilike", lambda q: q.ilike("name", "B%"), "name LIKE ?", ["b%"]),
    ("in", lambda q: q.in_("id", [1, 3, 5]), "id IN (1, 3, 5)", []),
    ("is null", lambda q: q.is_("score", "null"), "score IS NULL", []),
    ("not eq", lambda q: q.not_.eq("tier", "gold"), "NOT (tier = ?)", ["gold"]),
    ("or", lambda q: q.or_("tier.eq.gold,score.lt.1"), "(tier = ? OR score < ?)", ["gold", 1]),
    ("like_any_of", lambda q: q.like_any_of("name", "A*,C*"), "(name GLOB 'A*' OR name GLOB 'C*')", []),
    ("like_all_of", lambda q: q.like_all_of("name", "*a*,*n*"), "(name GLOB '*a*' AND name GLOB '*n*')", []),
    ("ilike_any_of", lambda q: q.ilike_any_of("name", "b*,d*"), "(name LIKE 'b%' OR name LIKE 'd%')", []),
    ("match", lambda q: q.match({"tier": "basic", "score": 1}), "tier = 'basic' AND score = 1", []),
]:
    got = build(customers().select("*")).order("id").execute().data
    same(f"filter {name}", got, sql(f"SELECT * FROM customers WHERE {query} ORDER BY id", *args))

# PostgreSQL's NULL ordering (PostgREST docs, "Ordering": nullsfirst/nullslast; the defaults are PostgreSQL's).
same("order asc: NULLs last", [r["id"] for r in customers().select("id").order("score").order("id").execute().data],
     [r["id"] for r in sql("SELECT id FROM customers ORDER BY score ASC NULLS LAST, id")])
same("order desc: NULLs first", [r["id"] for r in customers().select("id").order("score", desc=True).order("id").execute().data],
     [r["id"] for r in sql("SELECT id FROM customers ORDER BY score DESC NULLS FIRST, id")])
same("order nullsfirst", [r["id"] for r in customers().select("id").order("score", nullsfirst=True).order("id").execute().data],
     [r["id"] for r in sql("SELECT id FROM customers ORDER BY score ASC NULLS FIRST, id")])

# Paging: a window past the end is an empty page (PostgREST docs, "Limits and Pagination").
same("range", customers().select("id").order("id").range(1, 2).execute().data, sql("SELECT id FROM customers ORDER BY id LIMIT 2 OFFSET 1"))
same("past the end", customers().select("id").order("id").offset(100).limit(5).execute().data, [])
page, rows = 0, []
while True:
    batch = customers().select("id").order("id").range(page * 2, page * 2 + 1).execute().data
    if not batch:
        break
    rows += batch
    page += 1
same("page until empty", rows, sql("SELECT id FROM customers ORDER BY id"))
response = customers().select("id", count=CountMethod.exact).eq("tier", "basic").limit(1).execute()
same("count=exact", response.count, sql("SELECT count(*) AS n FROM customers WHERE tier = 'basic'")[0]["n"])
same("single", customers().select("name").eq("id", 2).single().execute().data, sql("SELECT name FROM customers WHERE id = 2")[0])
same("maybe_single none", customers().select("name").eq("id", 999).maybe_single().execute(), None)
same("strip_nulls", customers().select("id,score").eq("id", 3).strip_nulls().execute().data,
     [{k: v for k, v in row.items() if v is not None} for row in sql("SELECT id, score FROM customers WHERE id = 3")])
csv_lines = ["id,name"] + [f"{r['id']},{r['name']}" for r in sql("SELECT id, name FROM customers WHERE id <= 2 ORDER BY id")]
same("csv", customers().select("id,name").lte("id", 2).order("id").csv().execute().data, "\n".join(csv_lines))

# Full-text search on an FTS5 table.
for kind, query, match in [
    (None, "fat & cat", '"fat" AND "cat"'),
    ("plain", "fat cat", '"fat" AND "cat"'),
    ("phrase", "fat cat", '"fat cat"'),
    ("web_search", '"sad dog" or rat', '"sad dog" OR "rat"'),
]:
    got = client.from_("docs").select("title").text_search("body", query, {"type": kind} if kind else None).order("title").execute().data
    same(f"text_search {kind or 'fts'}", got, sql("SELECT title FROM docs WHERE body MATCH ? ORDER BY title", match))

# Resource embedding (PostgREST docs, "Resource Embedding"): arrays one-to-many, objects many-to-one.
def customer_orders(where=""):
    result = []
    for c in sql("SELECT id, name FROM customers ORDER BY id"):
        embedded = sql(f"SELECT id, status FROM orders WHERE customer_id = ? {where} ORDER BY id", c["id"])
        result.append({"name": c["name"], "orders": embedded})
    return result


same("embed one-to-many", customers().select("name, orders(id,status)").order("id").order("id", foreign_table="orders").execute().data,
     customer_orders())
same("embed filtered", customers().select("name, orders(id,status)").eq("orders.status", "paid").order("id")
     .order("id", foreign_table="orders").execute().data, customer_orders("AND status = 'paid'"))
inner = [row for row in customer_orders("AND status = 'paid'") if row["orders"]]
same("embed !inner", customers().select("name, orders!inner(id,status)").eq("orders.status", "paid").order("id")
     .order("id", foreign_table="orders").execute().data, inner)
same("embed many-to-one", orders().select("id, buyer:customers(name)").order("id").execute().data,
     [{"id": o["id"], "buyer": ({"name": o["name"]} if o["name"] is not None else None)}
      for o in sql("SELECT o.id, c.name FROM orders o LEFT JOIN customers c ON c.id = o.customer_id ORDER BY o.id")])

# Writes, each followed by the whole table read back through the API and compared with SQLite.
created = customers().insert({"name": "Eve", "email": "eve@example.com", "score": 4.5}).execute().data
same("insert returns the row", created, sql("SELECT * FROM customers WHERE email = 'eve@example.com'"))
table_matches("customers", "insert")
bulk = [{"name": "Fay", "email": "fay@example.com"}, {"name": "Gus", "email": "gus@example.com", "tier": "gold"}]
customers().insert(bulk, default_to_null=False, returning=ReturnMethod.minimal).execute()
same("missing=default", sql("SELECT tier FROM customers WHERE email = 'fay@example.com'"), [{"tier": "basic"}])
table_matches("customers", "bulk insert with defaults")
response = customers().insert([{"name": "Hal", "email": "hal@example.com"}], count=CountMethod.exact).execute()
same("insert count", response.count, 1)
customers().upsert({"email": "eve@example.com", "name": "Eve Two"}, on_conflict="email").execute()
table_matches("customers", "upsert on email")
customers().upsert({"id": 1, "name": "ignored", "email": "x@example.com"}, ignore_duplicates=True).execute()
table_matches("customers", "upsert ignoring duplicates")
response = customers().update({"tier": "silver"}, count=CountMethod.exact).eq("tier", "basic").execute()
same("update count", response.count, sql("SELECT count(*) AS n FROM customers WHERE tier = 'silver'")[0]["n"])
table_matches("customers", "update")
response = orders().delete(count=CountMethod.exact).eq("status", "open").execute()
same("delete returns the rows", [r["status"] for r in response.data], ["open"] * response.count)
table_matches("orders", "delete")
same("max_affected refuses a larger update", error_code("max_affected", lambda: customers().update({"score": 0}).gt("id", 0).max_affected(1).execute()), "PGRST124")
table_matches("customers", "refused update")

# Errors clients branch on (PostgREST docs, "Errors": SQLSTATE codes pass through).
same("unknown column", error_code("unknown column", lambda: customers().select("nope").execute()), "42703")
same("unknown body key", error_code("unknown key", lambda: customers().insert({"nope": 1}).execute()), "PGRST204")
same("not null", error_code("not null", lambda: customers().insert({"email": "n@example.com"}).execute()), "23502")
same("unique", error_code("unique", lambda: customers().insert({"name": "Dup", "email": "eve@example.com"}).execute()), "23505")
same("foreign key", error_code("fk", lambda: orders().insert({"customer_id": 999, "status": "x"}).execute()), "23503")
table_matches("customers", "refused writes")
print(f"{checked} checks passed")
