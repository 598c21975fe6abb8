// End-to-end with the PostgreSQL JDBC driver through shardgate: server-side prepared statements
// (prepareThreshold=1), JDBC's own BEGIN in the extended protocol, typed round trips, batches.
// Usage: java -cp /usr/share/java/postgresql.jar tests/e2e/JdbcDriver.java PORT
import java.math.BigDecimal;
import java.sql.*;
import java.util.UUID;

public class JdbcDriver {
    static void check(boolean cond, String what) {
        if (!cond) {
            System.out.println("FAIL " + what);
            System.exit(1);
        }
        System.out.println("ok   " + what);
    }

    static long userOf(int i) {
        return (i * 7919L) % 1000;
    }

    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://127.0.0.1:" + args[0] + "/app?user=postgres&prepareThreshold=1";
        try (Connection c = DriverManager.getConnection(url)) {
            try (Statement s = c.createStatement()) {
                s.execute("DROP TABLE IF EXISTS e2e_jdbc");
                s.execute("CREATE TABLE e2e_jdbc (user_id bigint, id int, price numeric(10,2), label text, "
                        + "data bytea, at timestamptz, tag uuid, note text, doc jsonb, tags text[], PRIMARY KEY (user_id, id))");
            }
            c.setAutoCommit(false); // JDBC sends BEGIN itself, pipelined with the first statement
            try (PreparedStatement p = c.prepareStatement(
                    "INSERT INTO e2e_jdbc (user_id, id, price, label, data, at, tag, note, doc, tags) "
                    + "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?::jsonb, ?)")) {
                for (int i = 1; i <= 30; i++) {
                    p.setLong(1, userOf(i));
                    p.setInt(2, i);
                    p.setBigDecimal(3, new BigDecimal(i + "." + String.format("%02d", i % 100)));
                    p.setString(4, "label " + i + " é✓");
                    p.setBytes(5, new byte[] {(byte) i, 0, (byte) 255});
                    p.setTimestamp(6, new Timestamp(1704110400000L + i * 86400000L));
                    p.setObject(7, new UUID(0, i));
                    p.setNull(8, Types.VARCHAR);
                    p.setString(9, "{\"i\": " + i + ", \"nested\": [" + i + ", null]}");
                    p.setArray(10, c.createArrayOf("text", new String[] {"t" + i, "x"}));
                    if (p.executeUpdate() != 1) {
                        System.out.println("FAIL insert " + i);
                        System.exit(1);
                    }
                }
            }
            c.commit();
            check(true, "30 typed rows inserted in one transaction across shards");
            try (PreparedStatement q = c.prepareStatement(
                    "SELECT price, label, data, at, tag, note, doc->>'i', tags FROM e2e_jdbc WHERE user_id = ? AND id = ?")) {
                for (int i = 1; i <= 30; i++) {
                    q.setLong(1, userOf(i));
                    q.setInt(2, i);
                    try (ResultSet r = q.executeQuery()) {
                        boolean ok = r.next()
                                && r.getBigDecimal(1).equals(new BigDecimal(i + "." + String.format("%02d", i % 100)))
                                && r.getString(2).equals("label " + i + " é✓")
                                && java.util.Arrays.equals(r.getBytes(3), new byte[] {(byte) i, 0, (byte) 255})
                                && r.getTimestamp(4).getTime() == 1704110400000L + i * 86400000L
                                && r.getObject(5).equals(new UUID(0, i))
                                && r.getString(6) == null
                                && r.getString(7).equals(String.valueOf(i))
                                && java.util.Arrays.equals((String[]) r.getArray(8).getArray(), new String[] {"t" + i, "x"})
                                && !r.next();
                        if (!ok) {
                            System.out.println("FAIL row " + i);
                            System.exit(1);
                        }
                    }
                }
            }
            c.commit();
            check(true, "numeric, text, bytea, timestamptz, uuid, jsonb, arrays and NULL round-trip with server-side prepares");
            try (PreparedStatement p = c.prepareStatement("INSERT INTO e2e_jdbc (user_id, id) VALUES (?, ?)")) {
                p.setLong(1, userOf(1));
                p.setInt(2, 1);
                p.executeUpdate();
                check(false, "duplicate refused");
            } catch (SQLException e) {
                check("23505".equals(e.getSQLState()), "PostgreSQL's unique violation reaches the driver");
                c.rollback();
            }
            try (PreparedStatement q = c.prepareStatement("SELECT count(*) FROM e2e_jdbc WHERE user_id = ?")) {
                q.setLong(1, userOf(2));
                try (ResultSet r = q.executeQuery()) {
                    check(r.next() && r.getLong(1) >= 1, "connection usable after the rollback");
                }
            }
            // Keyless: every shard, merged; the fetch size makes the proxy hand out the rows
            // 7 at a time (PortalSuspended).
            try (PreparedStatement q = c.prepareStatement("SELECT id FROM e2e_jdbc WHERE id > ? ORDER BY id")) {
                q.setFetchSize(7);
                q.setInt(1, 5);
                try (ResultSet r = q.executeQuery()) {
                    int n = 0, prev = 0;
                    boolean ordered = true;
                    while (r.next()) {
                        int id = r.getInt(1);
                        ordered &= id > prev;
                        prev = id;
                        n++;
                    }
                    check(n == 25 && ordered, "keyless ORDER BY merged, fetched 7 rows at a time");
                }
            }
            try (PreparedStatement q = c.prepareStatement("SELECT count(*), sum(price), avg(price) FROM e2e_jdbc")) {
                try (ResultSet r = q.executeQuery()) {
                    check(r.next() && r.getLong(1) == 30
                            && r.getBigDecimal(2).compareTo(new BigDecimal("469.65")) == 0
                            && r.getBigDecimal(3).toPlainString().equals("15.6550000000000000"),
                        "keyless count, sum and avg merged with PostgreSQL's numeric scale");
                }
            }
            c.commit();
        }
        System.out.println("jdbc end-to-end: all passed");
    }
}
