-- Four point SELECTs sent as one pipeline (one Sync): how psycopg's pipeline mode, pgx's
-- batches and libpq's pipeline mode send independent queries. Run with -M extended or
-- -M prepared (pgbench refuses pipelines in -M simple), e.g.
-- SCRIPT=bench/pipelined.sql MODES="prepared" bench/pgbench.sh
\set a1 random(1, 100000 * :scale)
\set a2 random(1, 100000 * :scale)
\set a3 random(1, 100000 * :scale)
\set a4 random(1, 100000 * :scale)
\startpipeline
SELECT abalance FROM pgbench_accounts WHERE aid = :a1;
SELECT abalance FROM pgbench_accounts WHERE aid = :a2;
SELECT abalance FROM pgbench_accounts WHERE aid = :a3;
SELECT abalance FROM pgbench_accounts WHERE aid = :a4;
\endpipeline
