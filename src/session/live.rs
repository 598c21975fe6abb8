//! A session's own views of the context's swappable parts that it reads on every request (the
//! config, the rate limits), kept current by arc_swap's cache.
//!
//! arc_swap's `load` costs some fifty instructions (a thread-local debt slot, then a check);
//! the routed path read the config and the limits three times per statement that way. A cache
//! compares the pointer it holds with the current one, and loads only after a RELOAD swapped
//! the part, so a session still sees a new config from its next read on.

use crate::config::Config;
use crate::context::Context;
use crate::gateway::Limiter;
use arc_swap::cache::Cache;
use arc_swap::ArcSwap;
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::Arc;

/// Which part of the context a view follows.
pub(super) trait Part: 'static {
    type Value: 'static;
    fn of(ctx: &Context) -> &ArcSwap<Self::Value>;
}

pub(super) struct ConfigPart;

impl Part for ConfigPart {
    type Value = Config;
    fn of(ctx: &Context) -> &ArcSwap<Config> {
        &ctx.config
    }
}

pub(super) struct LimitsPart;

impl Part for LimitsPart {
    type Value = Limiter;
    fn of(ctx: &Context) -> &ArcSwap<Limiter> {
        &ctx.limits
    }
}

/// The context, seen as the one part: what the cache is built on.
pub(super) struct Handle<P>(Arc<Context>, PhantomData<fn() -> P>);

impl<P: Part> Deref for Handle<P> {
    type Target = ArcSwap<P::Value>;
    fn deref(&self) -> &ArcSwap<P::Value> {
        P::of(&self.0)
    }
}

/// One part as it is now, for one owner.
pub(super) struct Live<P: Part>(Cache<Handle<P>, Arc<P::Value>>);

impl<P: Part> Live<P> {
    pub(super) fn new(ctx: &Arc<Context>) -> Self {
        Live(Cache::new(Handle(ctx.clone(), PhantomData)))
    }

    #[inline]
    pub(super) fn get(&mut self) -> &P::Value {
        self.0.load()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_view_sees_what_a_reload_stores() {
        let config: Config = toml::from_str(
            "[proxy]\nlisten = \"127.0.0.1:0\"\nstatement_timeout_ms = 5\n\
             [[shards]]\nname = \"s0\"\nurl = \"postgres://u@127.0.0.1:1/db\"\n",
        )
        .unwrap();
        let ctx = Context::new(config.clone()).unwrap();
        let mut view: Live<ConfigPart> = Live::new(&ctx);
        assert_eq!(view.get().proxy.statement_timeout_ms, 5);
        let mut next = config;
        next.proxy.statement_timeout_ms = 7;
        ctx.config.store(Arc::new(next));
        assert_eq!(view.get().proxy.statement_timeout_ms, 7);
    }
}
