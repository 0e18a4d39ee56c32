-- Close a handover (Resolve button, or idle timeout): root marked resolved, a closing line in the
-- thread, the owner told, and the conversation back to "no handover" with its history kept, so the
-- next escalation opens a new thread.
-- KEYS: conv, out_slack, ready_slack, out_reply, ready_reply, stats, open, lines
-- ARGV: now_ms, cid, thread_ts ('' = whatever is open), agent_id, agent_name, replies, reason,
--       idle_before_ms (for reason 'idle': only if the last activity is older)
-- Returns the resolved handover's hid (> 0), -1 nothing to resolve
local k = handover_keys()
local now, cid, reason = tonumber(ARGV[1]), ARGV[2], ARGV[7]
if not open_state(k.conv, '') then
  redis.call('ZREM', k.open, cid)  -- nothing open: no business in the idle index either
  return -1
end
if not open_state(k.conv, ARGV[3]) then return -1 end  -- open, but in another thread
if reason == 'idle' then
  local last = tonumber(redis.call('ZSCORE', k.open, cid) or '0')
  if last > tonumber(ARGV[8]) then return -1 end
end
local header = header_with(k.conv, 'resolved', ARGV[4], ARGV[5], now)
header.resolved_reason = reason
local hid = header.hid
local thread_ts = redis.call('HGET', k.conv, 'thread_ts') or ''
enqueue(k.out_slack, k.ready_slack, k.stats, 'slack', cid, now,
  'k', 'note', 'h', hid, 'e', cjson.encode({type = 'resolved', agent_id = ARGV[4], reason = reason}), 't', now)
enqueue(k.out_slack, k.ready_slack, k.stats, 'slack', cid, now,
  'k', 'update', 'h', hid, 'e', cjson.encode(header), 't', now)
if ARGV[6] == '1' then
  -- The handover's lines ride along, spliced in as they are stored (transcript.py shapes them),
  -- and why it closed: agent (the Resolve button), idle, or an operator's text (bridge handovers resolve).
  local body = lifecycle(k.conv, 'handover_resolved', now, ARGV[4], ARGV[5], thread_ts)
  local cut = redis.call('HGET', k.conv, 'lines_cut') == '1'
  body = string.sub(body, 1, -2) .. ',"reason":' .. cjson.encode(reason) .. ',"lines_cut":' ..
    tostring(cut) .. ',"lines":[' .. table.concat(redis.call('LRANGE', k.lines, 0, -1), ',') .. ']}'
  enqueue(k.out_reply, k.ready_reply, k.stats, 'reply', cid, now, 'k', 'lifecycle', 'h', hid,
    'e', body, 't', now)
end
redis.call('DEL', k.lines)
redis.call('HDEL', k.conv, 'state', 'header', 'thread_ts', 'thread_channel', 'agent_id', 'agent_name',
  'claimed_at', 'first_response_at', 'opened_at', 'lines_cut')
redis.call('ZREM', k.open, cid)
return tonumber(redis.call('HGET', k.conv, 'hid') or '1') or 1
