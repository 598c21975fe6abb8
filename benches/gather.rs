//! Benchmarks of the gather: the k-way merge of ordered shard streams, and grouped partial
//! aggregates combined at the proxy, per row.

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shardgate::gather::collate::Collation;
use shardgate::gather::rows::{put_description, put_row, Field};
use shardgate::gather::{Gather, Next};
use shardgate::router::{Agg, Grouping, MergePlan, SortKey};
use std::sync::Arc;

const SHARDS: usize = 3;
const ROWS: usize = 10_000;

fn field(name: &str, oid: u32) -> Field {
    Field::computed(name, oid)
}

fn description(fields: &[Field]) -> Vec<u8> {
    let mut out = BytesMut::new();
    put_description(&mut out, fields);
    out[5..].to_vec()
}

fn row(cols: &[&str]) -> Bytes {
    let mut out = BytesMut::new();
    put_row(&mut out, cols.iter().map(|c| Some(c.as_bytes())));
    out.freeze().slice(5..)
}

fn plan(group: Option<Grouping>, order: Vec<SortKey>) -> Arc<MergePlan> {
    Arc::new(MergePlan {
        shard_sql: String::new(),
        hidden: 0,
        group,
        order,
        offset: 0,
        limit: None,
        limit_param: None,
        offset_param: None,
        distinct: false,
    })
}

fn ordered(c: &mut Criterion) {
    // SELECT id, name FROM t ORDER BY id: each shard's rows already sorted.
    let fields = [field("id", 20), field("name", 25)];
    let shards: Vec<Vec<Bytes>> = (0..SHARDS)
        .map(|s| {
            (0..ROWS)
                .map(|i| row(&[&(i * SHARDS + s).to_string(), "some name"]))
                .collect()
        })
        .collect();
    let key = SortKey {
        column: 0,
        desc: false,
        nulls_first: false,
        bytewise: false,
        hidden: false,
    };
    let p = plan(None, vec![key]);
    let desc = description(&fields);
    let mut group = c.benchmark_group("gather");
    group.throughput(Throughput::Elements((SHARDS * ROWS) as u64));
    group.bench_function("k-way merge, 3 shards x 10k rows, int8 key", |b| {
        b.iter(|| {
            let mut g = Gather::new(p.clone(), Arc::new(Collation::bytewise()), 256, SHARDS);
            g.describe(&desc).unwrap();
            let mut out = BytesMut::with_capacity(1 << 20);
            let mut next = [0usize; SHARDS];
            let mut want: Vec<usize> = (0..SHARDS).collect();
            loop {
                while let Some(i) = want.pop() {
                    match shards[i].get(next[i]) {
                        Some(r) => {
                            next[i] += 1;
                            g.push(i, r.clone(), &mut out).unwrap();
                        }
                        None => g.finish_shard(i),
                    }
                }
                match g.next(&mut out).unwrap() {
                    Next::Need(i) => want.push(i),
                    Next::Done => break,
                }
            }
            out.len()
        })
    });
    // SELECT city, count(*), sum(x) FROM t GROUP BY city: 100 groups per shard.
    let fields = [field("city", 25), field("count", 20), field("sum", 1700)];
    let rows: Vec<Bytes> = (0..ROWS)
        .map(|i| row(&[&format!("city {}", i % 100), "3", "12.50"]))
        .collect();
    let g = Grouping {
        keys: vec![0],
        columns: vec![Agg::First, Agg::Count, Agg::Sum],
        having: None,
        single: false,
        total: None,
    };
    let p = plan(Some(g), vec![]);
    let desc = description(&fields);
    group.throughput(Throughput::Elements(ROWS as u64));
    group.bench_function(
        "grouped partials, 10k rows into 100 groups (count, numeric sum)",
        |b| {
            b.iter(|| {
                let mut g = Gather::new(p.clone(), Arc::new(Collation::bytewise()), 256, 1);
                g.describe(&desc).unwrap();
                let mut out = BytesMut::new();
                for r in &rows {
                    g.push(0, r.clone(), &mut out).unwrap();
                }
                g.finish(&mut out).unwrap();
                out.len()
            })
        },
    );
    group.finish();
}

criterion_group!(benches, ordered);
criterion_main!(benches);
