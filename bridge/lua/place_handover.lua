-- Choose the channel of a new handover's thread among its pool: the fewest open handovers, ties
-- broken by the fewest waiting lines, then by pool order. Idempotent per (cid, hid): a retried root
-- post finds the channel chosen the first time, so a thread never moves. A placement left by an
-- earlier handover of the conversation (whose "left" call a crash lost) is dropped first.
-- KEYS: placed   ARGV: cid, hid, now_ms, open_prefix, n, channel_1..n, waiting_1..n
-- Returns the chosen channel
local placed, cid, hid, prefix = KEYS[1], ARGV[1], ARGV[2], ARGV[4]
local current = redis.call('HGET', placed, cid)
if current then
  local channel, placed_hid = string.match(current, '^(%S+) (%S+)$')
  if channel and placed_hid == hid then return channel end
  if channel then redis.call('ZREM', prefix .. channel, cid) end
end
local n = tonumber(ARGV[5])
local best, best_open, best_waiting
for i = 1, n do
  local channel = ARGV[5 + i]
  local open = redis.call('ZCARD', prefix .. channel)
  local waiting = tonumber(ARGV[5 + n + i]) or 0
  if not best or open < best_open or (open == best_open and waiting < best_waiting) then
    best, best_open, best_waiting = channel, open, waiting
  end
end
redis.call('ZADD', prefix .. best, ARGV[3], cid)
redis.call('HSET', placed, cid, best .. ' ' .. hid)
return best
