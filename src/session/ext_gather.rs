//! Multi-shard reads through the extended protocol: a Bind whose keys span shards becomes a
//! gather portal, which the proxy describes and executes itself by sending every shard the
//! rewritten statement with the client's parameters and result formats.

use super::ext_route::Count;
use super::prepared::Prepared;
use super::{Session, Step};
use crate::error::Error;
use crate::protocol::{self, Frame};
use crate::ring::ShardId;
use crate::router::{MergePlan, Route, Target};
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use std::sync::Arc;

pub(super) struct GatherPortal {
    stmt: Arc<Prepared>,
    /// The client's Bind message.
    bind: Bytes,
    plan: Arc<MergePlan>,
    shards: Vec<ShardId>,
    /// Rows not yet fetched by an Execute with a row limit (the merged result, kept whole).
    pending: Option<VecDeque<Bytes>>,
}

impl Session {
    /// The gather portal a Bind of a multi-shard read makes, when it runs (`run_local`); None
    /// if it runs on one shard (or is not a read the gather can run, whose error then comes
    /// from the usual path).
    pub(super) fn gather_bind(
        &mut self,
        st: &Arc<Prepared>,
        frame: &Frame,
    ) -> Option<Box<GatherPortal>> {
        let [stmt] = st.plan.statements.as_slice() else {
            return None;
        };
        // One key, or none at all, is one shard: the usual relay, without routing twice.
        let one_shard = match &stmt.target {
            Target::Keys(_) | Target::Bound(_) => stmt.target.single_key(),
            Target::All => false,
            _ => true,
        };
        if one_shard || stmt.writes || stmt.not_mergeable.is_some() {
            return None;
        }
        let bind = protocol::decode_bind(frame.body()).ok()?;
        if st.bind_mismatch(frame.body(), &bind).is_some() {
            // Refused in its turn (`decide`).
            return None;
        }
        // One ring for routing, counting and the shard list, even if a rebalance switches it.
        let ring = self.ctx.ring.load_full();
        let shards = match self.bind_route(st, &bind, &ring, Count::Not) {
            Ok(Some(Route::Shards(v))) if v.len() > 1 => v.to_vec(),
            Ok(Some(Route::All)) => ring.members().to_vec(),
            _ => return None,
        };
        // Counted only now that the gather takes it; otherwise the relay counts it.
        let _ = self.bind_route(st, &bind, &ring, Count::Now);
        let sql = st.sql_of(stmt);
        // Concatenation is exact without a merge plan: the plan that merges nothing.
        let plan = (stmt.merge.clone()).unwrap_or_else(|| Arc::new(MergePlan::concat(sql)));
        Some(Box::new(GatherPortal {
            stmt: st.clone(),
            bind: frame.bytes.slice(5..),
            plan,
            shards,
            pending: None,
        }))
    }

    /// The gather portal a Describe or Execute names, if it is one.
    pub(super) fn gather_portal(&self, frame: &Frame) -> Option<&GatherPortal> {
        let name = match frame.tag {
            b'E' => protocol::portal_of_execute(frame.body())?,
            b'D' => match protocol::decode_target(frame.body()).ok()? {
                (b'P', name) => name,
                _ => return None,
            },
            _ => return None,
        };
        self.gather_portals.get(name)
    }

    /// A Describe of a gather portal followed by an Execute of it for all rows: the Execute
    /// will send the RowDescription first.
    pub(super) fn describe_with_next_execute(
        &mut self,
        frame: &Frame,
        next: Option<&Frame>,
    ) -> bool {
        let Some(next) = next else { return false };
        let described = match protocol::decode_target(frame.body()) {
            Ok((b'P', name)) if frame.tag == b'D' => name,
            _ => return false,
        };
        let joined = next.tag == b'E'
            && protocol::portal_of_execute(next.body()) == Some(described)
            && protocol::max_rows_of_execute(next.body()) == 0
            && self
                .gather_portals
                .get(described)
                .is_some_and(|p| p.pending.is_none());
        if joined {
            self.describe_next = Some(described.to_owned());
        }
        joined
    }

    /// Describe (asked of one shard) or Execute (run on every shard, merged) of a gather portal.
    pub(super) async fn run_gather_portal(&mut self, frame: &Frame) -> Step {
        let Some(p) = self.gather_portal(frame) else {
            return Ok(());
        };
        let (plan, stmt, bind, shards) = (
            p.plan.clone(),
            p.stmt.clone(),
            p.bind.clone(),
            p.shards.clone(),
        );
        let execute = frame.tag == b'E';
        let max_rows = if execute {
            protocol::max_rows_of_execute(frame.body()).max(0) as usize
        } else {
            0
        };
        let portal = protocol::portal_of_execute(frame.body())
            .unwrap_or_default()
            .to_owned();
        if execute && (max_rows > 0 || p.pending.is_some()) {
            return self.fetch(&portal, max_rows).await;
        }
        let Ok(decoded) = protocol::decode_bind(&bind) else {
            return Ok(());
        };
        let limits = match bound_limits(&plan, &decoded, &stmt.types) {
            Ok(l) => l,
            Err(e) => {
                let _ = self.fail(&e);
                self.ext_skipping = true;
                return Ok(());
            }
        };
        let mut request = BytesMut::new();
        protocol::put_parse(&mut request, "", &plan.shard_sql, &stmt.types);
        protocol::put_bind_unnamed(&mut request, &bind, &decoded, plan.hidden);
        protocol::put_target_message(&mut request, b'D', b'P', "");
        if execute {
            protocol::put_execute_all(&mut request);
        }
        protocol::put_empty(&mut request, b'S');
        let shards = if execute {
            shards
        } else {
            shards[..1].to_vec()
        };
        let describe = !execute || self.describe_next.take().is_some_and(|p| p == portal);
        let ok = self
            .exec_gather(shards, plan, &request, describe, execute, limits)
            .await?;
        if !ok {
            self.ext_skipping = true;
        } else if execute {
            // Run to its end: as in PostgreSQL, executing it again returns no more rows.
            if let Some(p) = self.gather_portals.get_mut(&portal) {
                p.pending = Some(VecDeque::new());
            }
        }
        Ok(())
    }
}

impl Session {
    /// Execute with a row limit (a driver's fetch size): the merged rows are collected once,
    /// then handed out `max_rows` at a time with PortalSuspended, as PostgreSQL does.
    async fn fetch(&mut self, portal: &str, max_rows: usize) -> Step {
        let collected = self
            .gather_portals
            .get(portal)
            .is_some_and(|p| p.pending.is_some());
        if !collected {
            let whole = Frame {
                tag: b'E',
                bytes: execute_all(portal),
            };
            let before = std::mem::take(&mut self.out);
            self.capturing = true;
            let r = Box::pin(self.run_gather_portal(&whole)).await;
            self.capturing = false;
            let captured = std::mem::replace(&mut self.out, before);
            r?;
            let mut rows = VecDeque::new();
            let mut at = 0;
            while at + 5 <= captured.len() {
                let len = i32::from_be_bytes([
                    captured[at + 1],
                    captured[at + 2],
                    captured[at + 3],
                    captured[at + 4],
                ]) as usize;
                let end = (at + 1 + len).min(captured.len());
                match captured[at] {
                    b'D' => rows.push_back(Bytes::copy_from_slice(&captured[at..end])),
                    b'C' => {}
                    // An error (or a notice) goes to the client now.
                    _ => self.out.extend_from_slice(&captured[at..end]),
                }
                at = end;
            }
            if self.ext_skipping {
                return Ok(());
            }
            match self.gather_portals.get_mut(portal) {
                Some(p) => p.pending = Some(rows),
                None => return Ok(()),
            }
        }
        let Some(rows) = self
            .gather_portals
            .get_mut(portal)
            .and_then(|p| p.pending.as_mut())
        else {
            return Ok(());
        };
        let n = if max_rows == 0 {
            rows.len()
        } else {
            max_rows.min(rows.len())
        };
        let chunk: Vec<Bytes> = rows.drain(..n).collect();
        // As PostgreSQL: a fetch that filled its count is suspended, even if no row is left
        // (the next Execute then completes with none).
        let more = max_rows > 0 && n == max_rows;
        for row in chunk {
            self.out.extend_from_slice(&row);
        }
        if more {
            protocol::put_empty(&mut self.out, b's');
        } else {
            protocol::put_command_complete(&mut self.out, &format!("SELECT {n}"));
        }
        Ok(())
    }
}

/// An Execute message body-and-header for all rows of a portal.
fn execute_all(portal: &str) -> Bytes {
    let mut b = BytesMut::new();
    b.extend_from_slice(b"E");
    b.extend_from_slice(&((4 + portal.len() + 1 + 4) as i32).to_be_bytes());
    b.extend_from_slice(portal.as_bytes());
    b.extend_from_slice(&[0, 0, 0, 0, 0]);
    b.freeze()
}

/// The LIMIT and OFFSET a Bind gives a plan's `LIMIT $n` / `OFFSET $n` (else the plan's own).
fn bound_limits(
    plan: &MergePlan,
    bind: &protocol::BindMsg<'_>,
    types: &[u32],
) -> Result<(Option<u64>, u64), Error> {
    let value = |i: usize, offset: bool| -> Result<Option<u64>, Error> {
        let Some(raw) = bind.params.get(i).copied().flatten() else {
            return Ok(None);
        };
        let n = if bind.format(i) == 1 {
            match raw.len() {
                8 => Some(i64::from_be_bytes(raw.try_into().unwrap_or_default())),
                4 => Some(i32::from_be_bytes(raw.try_into().unwrap_or_default()) as i64),
                2 => Some(i16::from_be_bytes(raw.try_into().unwrap_or_default()) as i64),
                _ => None,
            }
        } else {
            std::str::from_utf8(raw)
                .ok()
                .and_then(|t| t.trim().parse::<i64>().ok())
        };
        let Some(n) = n else {
            let ty = types.get(i).copied().unwrap_or(0);
            return Err(Error::unsupported(
                format!("parameter ${} of LIMIT or OFFSET (type {ty}) is not a whole number shardgate can read", i + 1),
                "bind LIMIT and OFFSET as integers",
            ));
        };
        u64::try_from(n)
            .map(Some)
            .map_err(|_| Error::NegativeLimit { offset })
    };
    let limit = match plan.limit_param {
        Some(i) => value(i, false)?,
        None => plan.limit,
    };
    let offset = match plan.offset_param {
        Some(i) => value(i, true)?.unwrap_or(0),
        None => plan.offset,
    };
    Ok((limit, offset))
}
