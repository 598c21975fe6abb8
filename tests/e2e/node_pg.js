// End-to-end with node-pg through shardgate: parameterized queries (extended protocol, unnamed
// and named statements), typed round trips, a transaction across shards, an error mid-way.
// Usage: node tests/e2e/node_pg.js PORT   (with `pg` resolvable via NODE_PATH)
const { Client } = require("pg");

const port = Number(process.argv[2]);

function check(cond, what) {
  if (!cond) {
    console.log(`FAIL ${what}`);
    process.exit(1);
  }
  console.log(`ok   ${what}`);
}

(async () => {
  const c = new Client({ host: "127.0.0.1", port, user: "postgres", database: "app" });
  await c.connect();
  await c.query("DROP TABLE IF EXISTS e2e_node");
  await c.query(
    "CREATE TABLE e2e_node (user_id bigint, id int, price numeric(10,2), label text, data bytea, " +
      "at timestamptz, doc jsonb, tag uuid, tags text[], note text, PRIMARY KEY (user_id, id))"
  );
  await c.query("BEGIN");
  for (let i = 1; i <= 30; i++) {
    await c.query({
      name: "ins",
      text:
        "INSERT INTO e2e_node (user_id, id, price, label, data, at, doc, tag, tags, note) " +
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
      values: [
        (i * 7919) % 1000, i, `${i}.${String(i % 100).padStart(2, "0")}`, `label ${i} é✓`,
        Buffer.from([i, 0, 255]), new Date(Date.UTC(2024, 0, (i % 28) + 1, 12)),
        { i, nested: [i, null] }, `00000000-0000-0000-0000-${String(i).padStart(12, "0")}`,
        [`t${i}`, "x"], null,
      ],
    });
  }
  await c.query("COMMIT");
  check(true, "30 typed rows inserted in one transaction with a named prepared statement");
  for (let i = 1; i <= 30; i++) {
    const r = await c.query(
      "SELECT price, label, data, at, doc, tag, tags, note FROM e2e_node WHERE user_id = $1 AND id = $2",
      [(i * 7919) % 1000, i]
    );
    const row = r.rows[0];
    const ok =
      r.rows.length === 1 &&
      row.price === `${i}.${String(i % 100).padStart(2, "0")}` &&
      row.label === `label ${i} é✓` &&
      Buffer.compare(row.data, Buffer.from([i, 0, 255])) === 0 &&
      row.at.getTime() === Date.UTC(2024, 0, (i % 28) + 1, 12) &&
      row.doc.i === i && row.doc.nested[1] === null &&
      row.tag === `00000000-0000-0000-0000-${String(i).padStart(12, "0")}` &&
      row.tags[0] === `t${i}` && row.note === null;
    if (!ok) {
      console.log("mismatch", i, row);
      process.exit(1);
    }
  }
  check(true, "numeric, text, bytea, timestamptz, jsonb, uuid, arrays and NULL round-trip");
  try {
    await c.query("INSERT INTO e2e_node (user_id, id) VALUES ($1, $2)", [(1 * 7919) % 1000, 1]);
    check(false, "duplicate refused");
  } catch (e) {
    check(e.code === "23505", "PostgreSQL's unique violation reaches the driver");
  }
  const r = await c.query("SELECT count(*)::int AS n FROM e2e_node WHERE user_id = $1", [(2 * 7919) % 1000]);
  check(r.rows[0].n >= 1, "connection usable after the error");
  // Keyless, with parameters: every shard, merged (node-pg's Describe + Execute of a portal).
  const agg = await c.query("SELECT count(*) AS n, sum(price) AS s, max(id) AS m FROM e2e_node WHERE id > $1", [5]);
  const a = agg.rows[0];
  check(a.n === "25" && a.s === "454.50" && a.m === 30, `keyless aggregates merged: ${JSON.stringify(a)}`);
  const top = await c.query("SELECT id FROM e2e_node ORDER BY price DESC LIMIT 3 OFFSET $1", [1]);
  const ids = top.rows.map((x) => x.id).join(",");
  check(ids === "29,28,27", `ORDER BY ... LIMIT merged: ${ids}`);
  await c.end();
  console.log("node-pg end-to-end: all passed");
})().catch((e) => {
  console.log("FAIL", e);
  process.exit(1);
});
