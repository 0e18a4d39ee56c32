-- Close a handover (Resolve button, or idle timeout): root marked resolved, a closing line in the
-- thread, the owner told, and the conversation back to "no handover" with its history kept, so the
-- next escalation opens a new thread. Within the reopen window the resolved header is kept
-- (last_header), so the Reopen button can bring this same thread back (reopen_handover.lua).
-- KEYS: conv, out_slack, ready_slack, out_reply, ready_reply, stats, open, lines, timers
-- ARGV: now_ms, cid, thread_ts ('' = whatever is open), agent_id, agent_name, replies, reason,
--       idle_before_ms (for reason 'idle': only if the last activity is older),
--       outcome ('' = none), note, reopen_window_ms (0 = no Reopen button)
-- Returns {the resolved handover's hid (> 0) | -1 nothing to resolve, opened_at ms, route}
local k = handover_keys()
local now, cid, reason = tonumber(ARGV[1]), ARGV[2], ARGV[7]
if not open_state(k.conv, '') then
  redis.call('ZREM', k.open, cid)  -- nothing open: no business in the idle index either
  return {-1, 0, ''}
end
if not open_state(k.conv, ARGV[3]) then return {-1, 0, ''} end  -- open, but in another thread
if reason == 'idle' then
  local last = tonumber(redis.call('ZSCORE', k.open, cid) or '0')
  if last > tonumber(ARGV[8]) then return {-1, 0, ''} end
end
local outcome, note, window = ARGV[9] or '', ARGV[10] or '', tonumber(ARGV[11] or '0')
local header = header_with(k.conv, 'resolved', ARGV[4], ARGV[5], now)
header.resolved_reason = reason
if outcome ~= '' then header.outcome = outcome end
if window > 0 then header.reopen_until = now + window end
local hid = header.hid
local thread_ts = redis.call('HGET', k.conv, 'thread_ts') or ''
local opened_at = tonumber(redis.call('HGET', k.conv, 'opened_at') or now)
enqueue(k.out_slack, k.ready_slack, k.stats, 'slack', cid, now,
  'k', 'note', 'h', hid, 'e', cjson.encode({type = 'resolved', agent_id = ARGV[4], reason = reason,
    outcome = outcome ~= '' and outcome or nil, note = note ~= '' and note or nil}), 't', now)
enqueue(k.out_slack, k.ready_slack, k.stats, 'slack', cid, now,
  'k', 'update', 'h', hid, 'e', cjson.encode(header), 't', now)
if ARGV[6] == '1' then
  -- The handover's lines ride along, spliced in as they are stored (transcript.py shapes them),
  -- and why it closed: agent (the Resolve button), idle, or an operator's text (bridge handovers resolve);
  -- with the desk's outcomes, the outcome and note the agent gave.
  local body = lifecycle(k.conv, 'handover_resolved', now, ARGV[4], ARGV[5], thread_ts)
  local cut = redis.call('HGET', k.conv, 'lines_cut') == '1'
  local desk = ''
  if outcome ~= '' then desk = desk .. ',"outcome":' .. cjson.encode(outcome) end
  if note ~= '' then desk = desk .. ',"note":' .. cjson.encode(note) end
  body = string.sub(body, 1, -2) .. ',"reason":' .. cjson.encode(reason) .. desk .. ',"lines_cut":' ..
    tostring(cut) .. ',"lines":[' .. table.concat(redis.call('LRANGE', k.lines, 0, -1), ',') .. ']}'
  enqueue(k.out_reply, k.ready_reply, k.stats, 'reply', cid, now, 'k', 'lifecycle', 'h', hid,
    'e', body, 't', now)
end
-- (The lines stay until the next handover opens, record.lua: a reopened one carries on with them.)
redis.call('HDEL', k.conv, 'state', 'header', 'thread_ts', 'thread_channel', 'agent_id', 'agent_name',
  'claimed_at', 'first_response_at', 'opened_at', unpack(SLA_FIELDS))
redis.call('ZREM', k.open, cid)
if window > 0 and KEYS[9] then
  -- Reopen stays possible until then; the desk's timer takes the button off the root at that time.
  redis.call('HSET', k.conv, 'last_header', cjson.encode(header), 'resolved_at', now)
  redis.call('ZADD', KEYS[9], header.reopen_until, cid)
end
return {tonumber(redis.call('HGET', k.conv, 'hid') or '1') or 1, opened_at, header.route or ''}
