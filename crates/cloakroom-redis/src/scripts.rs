//! The Lua scripts. Each touches keys of exactly one Cluster slot — one record, or one user's
//! index and epoch — so each runs atomically on Standalone and Cluster alike. Nothing ever
//! needs two slots at once; where an operation spans a record and an index, the Rust side
//! orders the single-slot steps so that a crash between them errs on the safe side (see the
//! crate docs, "Invariants").
//!
//! Every script that changes or removes a session record also publishes `s <id>` on the
//! store's invalidation channel, in the same atomic step, so a push-mode session cache on any
//! instance hears of the change (see [`crate::invalidation`]). `PUBLISH` names no key, so it is
//! allowed in a script on Cluster, where the message reaches every node's subscribers.
//!
//! Timestamps travel as decimal milliseconds. Lua numbers are doubles, exact to 2^53 ms (the
//! year 287,396), so comparisons are exact; values written back are either the caller's or the
//! stored strings, chosen by comparison, so no stored timestamp is ever re-formatted.

use std::sync::LazyLock;

use redis::Script;

const PRELUDE: &str = r"
local function fmt(n)
  return string.format('%d', math.min(n, 9007199254740991))
end
";

fn script(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}{body}"))
}

/// `KEYS[1]` record. `ARGV`: u h v ls ie ae b expire_at. Returns 1 if created, 0 if the id
/// exists (nothing changes).
pub(crate) static CREATE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'u', ARGV[1], 'h', ARGV[2], 'v', ARGV[3], 'ls', ARGV[4],
  'ie', ARGV[5], 'ae', ARGV[6], 'b', ARGV[7])
redis.call('PEXPIREAT', KEYS[1], ARGV[8])
return 1
",
    )
});

/// `KEYS[1]` index, `KEYS[2]` epoch. `ARGV`: score member prune_below grace. Adds the member,
/// drops entries scored below `prune_below`, sets the index's TTL to its highest score plus
/// grace, and returns the user's revocation epoch (nil if never revoked).
pub(crate) static INDEX_ADD: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[3])
local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if top[2] then redis.call('PEXPIREAT', KEYS[1], fmt(tonumber(top[2]) + tonumber(ARGV[4]))) end
return redis.call('GET', KEYS[2])
",
    )
});

/// `KEYS[1]` index. `ARGV`: member score grace. Raises an existing member's score (never
/// lowers it, never adds a member) and keeps the index's TTL at its highest score plus grace.
pub(crate) static INDEX_RAISE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
redis.call('ZADD', KEYS[1], 'XX', 'GT', ARGV[2], ARGV[1])
local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if top[2] then redis.call('PEXPIREAT', KEYS[1], fmt(tonumber(top[2]) + tonumber(ARGV[3]))) end
return 1
",
    )
});

/// `KEYS[1]` record. `ARGV`: last_seen idle_expiry cap grace channel id_hex.
///
/// Returns `{0}` if there is no record, `{1}` when done, or `{2, user, expiry}` without
/// writing anything when the touch would move the record's expiry past both its current one
/// and `cap` — the score its index entry is known to have. The caller then raises the index
/// entry to `expiry` and calls again with that as `cap`, so an index entry is never scored
/// below its record's expiry (which would let pruning orphan a live session).
pub(crate) static TOUCH: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local f = redis.call('HMGET', KEYS[1], 'u', 'ls', 'ie', 'ae')
if not f[1] then return {0} end
local ls, ie, ae = tonumber(f[2]), tonumber(f[3]), tonumber(f[4])
local want, want_s = tonumber(ARGV[2]), ARGV[2]
if ae < want then want, want_s = ae, f[4] end
local new_ie, new_ie_s = ie, f[3]
if want > ie then new_ie, new_ie_s = want, want_s end
local old_exp = math.min(ie, ae)
local new_exp = math.min(new_ie, ae)
if new_exp > old_exp and new_exp > tonumber(ARGV[3]) then return {2, f[1], fmt(new_exp)} end
local new_ls_s = f[2]
if tonumber(ARGV[1]) > ls then new_ls_s = ARGV[1] end
redis.call('HSET', KEYS[1], 'ls', new_ls_s, 'ie', new_ie_s)
if new_exp > old_exp then redis.call('PEXPIREAT', KEYS[1], fmt(new_exp + tonumber(ARGV[4]))) end
redis.call('PUBLISH', ARGV[5], 's ' .. ARGV[6])
return {1}
",
    )
});

/// `KEYS[1]` record. `ARGV`: expected_v new_v ls ie ae b cap grace channel id_hex.
///
/// Returns `{0}` not found, `{1}` version conflict, `{2}` saved, or `{3, user, expiry}` (nothing
/// written) when the new expiry needs the index raised first, as for [`TOUCH`]. User and handle
/// are never written: the stored ones stay.
pub(crate) static SAVE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local f = redis.call('HMGET', KEYS[1], 'u', 'v', 'ie', 'ae')
if not f[1] then return {0} end
if f[2] ~= ARGV[1] then return {1} end
local old_exp = math.min(tonumber(f[3]), tonumber(f[4]))
local new_exp = math.min(tonumber(ARGV[4]), tonumber(ARGV[5]))
if new_exp > old_exp and new_exp > tonumber(ARGV[7]) then return {3, f[1], fmt(new_exp)} end
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'ls', ARGV[3], 'ie', ARGV[4], 'ae', ARGV[5], 'b', ARGV[6])
redis.call('PEXPIREAT', KEYS[1], fmt(new_exp + tonumber(ARGV[8])))
redis.call('PUBLISH', ARGV[9], 's ' .. ARGV[10])
return {2}
",
    )
});

/// `KEYS[1]` record. `ARGV`: channel id_hex. Deletes it; returns its user (empty if the field
/// is missing) or nil if there was no record.
pub(crate) static DELETE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local u = redis.call('HGET', KEYS[1], 'u')
if redis.call('DEL', KEYS[1]) == 0 then return false end
redis.call('PUBLISH', ARGV[1], 's ' .. ARGV[2])
return u or ''
",
    )
});

/// `KEYS[1]` record. `ARGV`: now channel id_hex. Deletes the record if it is expired at `now`. Returns 0 if
/// there is no record, 1 if it is live (untouched), 2 if it was deleted.
pub(crate) static PURGE_ONE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local f = redis.call('HMGET', KEYS[1], 'ie', 'ae')
if not f[1] then return 0 end
if math.min(tonumber(f[1]), tonumber(f[2])) > tonumber(ARGV[1]) then return 1 end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[2], 's ' .. ARGV[3])
return 2
",
    )
});

/// `KEYS[1]` epoch. `ARGV`: ttl_ms. Increments the user's revocation epoch.
pub(crate) static EPOCH_BUMP: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local e = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return e
",
    )
});

/// `KEYS[1]` consumed link. `ARGV`: now. Deletes the record if its link expired at `now`
/// (the value is the expiry). Returns 1 if deleted, 0 otherwise.
pub(crate) static PURGE_LINK: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local e = redis.call('GET', KEYS[1])
if not e or tonumber(e) > tonumber(ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1])
return 1
",
    )
});
