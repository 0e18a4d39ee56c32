-- The Claim button: one agent takes the handover (a second click by the same agent changes nothing).
-- KEYS: conv, out_slack, ready_slack, out_reply, ready_reply, stats, open
-- ARGV: now_ms, cid, thread_ts, agent_id, agent_name, replies ('1'|'0'), take_over ('1'|'0')
-- Returns 1 claimed, 0 already claimed by this agent, -1 not an open handover thread,
-- -2 claimed by another agent (unless take_over: the handover_take_over button)
local k = handover_keys()
local now = tonumber(ARGV[1])
local state = open_state(k.conv, ARGV[3])
if not state then return -1 end
if state == 'claimed' then
  local holder = redis.call('HGET', k.conv, 'agent_id')
  if holder == ARGV[4] then return 0 end
  if ARGV[7] ~= '1' then return -2 end
end
claim(k, ARGV[2], now, ARGV[4], ARGV[5], ARGV[6])
redis.call('ZADD', k.open, now, ARGV[2])
return 1
