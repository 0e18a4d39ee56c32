-- After Slack (or the reply endpoint) accepted a delivery: drop the delivered entries, clear the
-- in-flight marker and the retry count, record where a new root landed, renew the lease.
-- A worker whose lease expired meanwhile still drops what it delivered, but leaves the marker and
-- retry count alone (they belong to the worker now holding the lease) and learns it from the 0.
-- With release = '1', a worker whose lease holds and whose outbox is now empty also hands the
-- conversation back, as release.lua would (atomic with record.lua's append: no wake-up is lost).
-- With fetch_limit > 0, a worker whose lease holds and whose outbox is not empty also gets what
-- fetch.lua would return, for its next post (one call per post saved).
-- With a receipt (JSON, naming its handover's `hid`), the delivery also queues a slack-lane "reaction" (lib.lua `notice`): the
-- receipt of an agent's reply the owner accepted, atomic with dropping that reply.
-- KEYS: conv, out, lease, stats, out_reply, ready_reply, ready, out_slack, ready_slack
-- ARGV: worker, lease_ms, lane, root_hid|'', root_channel, root_ts, replies ('1'|'0'), now, cid,
--       release ('1'|'0'), fetch_limit, notice json|'', ids...
-- Returns {held (1|0), entries still pending in this lane, released (1|0)[, flat conv hash, entries]}
local conv, lane = KEYS[1], ARGV[3]
local held = redis.call('GET', KEYS[3]) == ARGV[1]
local ids = {}
for i = 13, #ARGV do ids[#ids + 1] = ARGV[i] end
if #ids > 0 then
  local removed = redis.call('XDEL', KEYS[2], unpack(ids))
  redis.call('HINCRBY', KEYS[4], lane, -removed)
  if removed > 0 and ARGV[12] ~= '' then
    local receipt = cjson.decode(ARGV[12])
    notice(KEYS[8], KEYS[9], KEYS[4], ARGV[9], tonumber(ARGV[8]), 'reaction', receipt.hid, ARGV[12])
  end
end
if held then redis.call('HDEL', conv, 'inflight:' .. lane, 'attempts:' .. lane) end
local hid = ARGV[4]
-- (a conversation forgotten or expired meanwhile is not brought back as a hash without a TTL)
if hid ~= '' and redis.call('EXISTS', conv) == 1 then
  redis.call('HSET', conv, 't:' .. hid, ARGV[5] .. ' ' .. ARGV[6])
  if redis.call('HGET', conv, 'hid') == hid and redis.call('HGET', conv, 'state') then
    redis.call('HSET', conv, 'thread_ts', ARGV[6], 'thread_channel', ARGV[5])
    local header = cjson.decode(redis.call('HGET', conv, 'header') or '{}')
    header.thread_ts = ARGV[6]
    header.channel = ARGV[5]  -- the pool's channel the root went to
    redis.call('HSET', conv, 'header', cjson.encode(header))
    if header.transfer then  -- the desk's transfer (transfer_handover.lua): the old thread links here
      transfer_landed(conv, header, ARGV[9], tonumber(ARGV[8]), ARGV[5], ARGV[6], KEYS[2], KEYS[7], KEYS[4],
        KEYS[5], KEYS[6], ARGV[7])
    elseif ARGV[7] == '1' then
      local now = tonumber(ARGV[8])
      enqueue(KEYS[5], KEYS[6], KEYS[4], 'reply', ARGV[9], now, 'k', 'lifecycle', 'h', hid,
        'e', lifecycle(conv, 'handover_opened', now, '', '', ARGV[6]), 't', now)
    end
  end
end
local pending = redis.call('XLEN', KEYS[2])
if not held then return {0, pending, 0} end
if pending == 0 and ARGV[10] == '1' then
  redis.call('DEL', KEYS[3], KEYS[2])
  redis.call('ZREM', KEYS[7], ARGV[9])
  return {1, 0, 1}
end
redis.call('PEXPIRE', KEYS[3], ARGV[2])
local limit = tonumber(ARGV[11])
if pending > 0 and limit > 0 then
  return {1, pending, 0, redis.call('HGETALL', conv), redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', limit)}
end
return {1, pending, 0}
