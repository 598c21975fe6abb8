"""End-to-end with a real Python driver: psycopg 3 through shardgate, prepared and binary.

Usage: python3 tests/e2e/psycopg_driver.py PORT SHARD_PORT...
PORT is the proxy's; the SHARD_PORTs let the script check placement behind the proxy's back.
"""
import datetime
import decimal
import sys
import uuid

import psycopg

port = int(sys.argv[1])
shard_ports = [int(p) for p in sys.argv[2:]]
dsn = f"host=127.0.0.1 port={port} user=postgres dbname=app"


def check(cond, what):
    if not cond:
        print(f"FAIL {what}")
        sys.exit(1)
    print(f"ok   {what}")


# prepare_threshold=0: every statement is prepared (Parse/Bind/Execute with named statements).
with psycopg.connect(dsn, prepare_threshold=0, autocommit=True) as conn:
    conn.execute("DROP TABLE IF EXISTS e2e_items")
    conn.execute(
        "CREATE TABLE e2e_items (user_id bigint, id int, price numeric(10,2), label text, "
        "data bytea, at timestamptz, doc jsonb, tag uuid, tags text[], note text, "
        "PRIMARY KEY (user_id, id))"
    )

rows = []
for i in range(1, 41):
    rows.append((
        i * 7919 % 1000,
        i,
        decimal.Decimal(f"{i}.{i % 100:02d}"),
        f"label {i} é✓",
        bytes([i, 0, 255]),
        datetime.datetime(2024, 1, i % 28 + 1, 12, 0, tzinfo=datetime.timezone.utc),
        psycopg.types.json.Jsonb({"i": i, "nested": [i, None]}),
        uuid.UUID(int=i),
        [f"t{i}", "x"],
        None,
    ))

with psycopg.connect(dsn, prepare_threshold=0) as conn:
    # Not autocommit: psycopg wraps the inserts in one transaction across shards.
    with conn.cursor() as cur:
        for r in rows:
            cur.execute(
                "INSERT INTO e2e_items (user_id, id, price, label, data, at, doc, tag, tags, note) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                r,
            )
    conn.commit()
    check(True, "40 typed rows inserted in one transaction with prepared statements")

    # Binary results, key bound as a parameter: each row read back from its own shard.
    with conn.cursor(binary=True) as cur:
        for r in rows:
            cur.execute(
                "SELECT user_id, id, price, label, data, at, doc, tag, tags, note "
                "FROM e2e_items WHERE user_id = %s AND id = %s",
                (r[0], r[1]),
            )
            got = cur.fetchone()
            want = list(r)
            want[6] = r[6].obj
            if list(got) != want:
                print("mismatch", got, want)
                sys.exit(1)
    check(True, "every type round-trips in binary: int, numeric, text, bytea, timestamptz, jsonb, uuid, array, NULL")
    conn.commit()

    # An error inside a transaction, then rollback: the connection stays usable.
    try:
        conn.execute("INSERT INTO e2e_items (user_id, id) VALUES (%s, %s)", (rows[0][0], rows[0][1]))
        check(False, "duplicate key refused")
    except psycopg.errors.UniqueViolation:
        conn.rollback()
        check(True, "PostgreSQL's unique violation reaches the driver")
    n = conn.execute("SELECT count(*) FROM e2e_items WHERE user_id = %s", (rows[1][0],)).fetchone()[0]
    check(n >= 1, "connection usable after the rollback")
    conn.rollback()

    # Keyless, with a parameter, binary and text: every shard's rows merged exactly.
    for binary in (False, True):
        with conn.cursor(binary=binary) as cur:
            cur.execute(
                "SELECT count(*), sum(price), avg(price), min(label), max(at) FROM e2e_items WHERE id > %s",
                (10,),
            )
            got = cur.fetchone()
            rest = [r for r in rows if r[1] > 10]
            total = sum(r[2] for r in rest)
            avg = (total / len(rest)).quantize(decimal.Decimal("1.0000000000000000"))
            want = (len(rest), total, avg, min(r[3] for r in rest), max(r[5] for r in rest))
            check(got == want, f"keyless aggregates merged (binary={binary}): {got}")
            cur.execute("SELECT id FROM e2e_items ORDER BY price DESC LIMIT %s OFFSET 2", (5,))
            ids = [r[0] for r in cur.fetchall()]
            check(ids == [38, 37, 36, 35, 34], f"ORDER BY ... LIMIT merged (binary={binary}): {ids}")
    conn.rollback()

# Behind the proxy: the shards' parts add up to the whole, and no shard holds everything.
counts = []
for p in shard_ports:
    with psycopg.connect(f"host=127.0.0.1 port={p} user=postgres dbname=app") as direct:
        counts.append(direct.execute("SELECT count(*) FROM e2e_items").fetchone()[0])
check(sum(counts) == 40 and max(counts) < 40, f"rows spread over the shards: {counts}")
print("psycopg end-to-end: all passed")
