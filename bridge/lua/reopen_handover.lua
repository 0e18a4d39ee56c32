-- The Reopen button on a resolved root: the same handover comes back in the same thread (root open
-- again, lines mirrored again, SLA timers restarted), within the reopen window only, and only while
-- no newer handover has opened for this conversation.
-- KEYS: conv, out_slack, ready_slack, out_reply, ready_reply, stats, open, lines, timers
-- ARGV: now_ms, cid, thread_ts, agent_id, agent_name, replies ('1'|'0')
-- Returns the hid (> 0) reopened, -1 not a resolved handover of this thread, -2 another one is open,
--         -3 the reopen window has passed
local k = handover_keys()
local now, cid, thread_ts = tonumber(ARGV[1]), ARGV[2], ARGV[3]
if open_state(k.conv, '') then return -2 end
local c = redis.call('HMGET', k.conv, 'last_header', 'hid')
if not c[1] then  -- the window's timer took it away already, or there never was one
  local thread = redis.call('HGET', k.conv, 't:' .. (c[2] or '0')) or ''
  if thread_ts ~= '' and string.sub(thread, -#thread_ts - 1) == ' ' .. thread_ts then return -3 end
  return -1
end
local header = cjson.decode(c[1])
if header.thread_ts ~= thread_ts or tostring(header.hid) ~= c[2] then return -1 end
if tonumber(header.reopen_until or 0) < now then return -3 end
local thread = redis.call('HGET', k.conv, 't:' .. c[2]) or ''
local channel = string.match(thread, '^(%S+) ') or ''
header.status, header.status_at, header.reopened_at = 'open', now, now
header.reopens = (header.reopens or 0) + 1
header.agent_id, header.agent_name, header.reopen_until = nil, nil, nil
header.outcome, header.resolved_reason, header.sla_breached = nil, nil, nil
local encoded = cjson.encode(header)
redis.call('HDEL', k.conv, 'last_header', 'resolved_at', 'agent_id', 'agent_name', 'claimed_at',
  'first_response_at', unpack(SLA_FIELDS))
redis.call('HSET', k.conv, 'state', 'open', 'header', encoded, 'opened_at', now, 'thread_ts', thread_ts,
  'thread_channel', channel)
redis.call('ZADD', k.open, now, cid)
redis.call('ZADD', KEYS[9], now, cid)
enqueue(k.out_slack, k.ready_slack, k.stats, 'slack', cid, now, 'k', 'update', 'h', c[2], 'e', encoded, 't', now)
enqueue(k.out_slack, k.ready_slack, k.stats, 'slack', cid, now, 'k', 'note', 'h', c[2],
  'e', cjson.encode({type = 'reopened', agent_id = ARGV[4]}), 't', now)
if ARGV[6] == '1' then
  local event = cjson.decode(lifecycle(k.conv, 'handover_opened', now, ARGV[4], ARGV[5], thread_ts))
  event.reopened = true
  -- (the reply lane builds the notification's id from `hid`: one id per reopening, not the first open's)
  event.hid = c[2] .. '.reopened.' .. header.reopens
  enqueue(k.out_reply, k.ready_reply, k.stats, 'reply', cid, now, 'k', 'lifecycle', 'h', c[2],
    'e', cjson.encode(event), 't', now)
end
return tonumber(c[2])
