-- Forget one conversation (bridge forget, DELETE /admin/conversations/...): every key it has in its
-- partition, its place in the partition's queues and indexes, its pending counts and its dead letters.
-- Thread mappings live in other slots: their (channel ts) pairs are returned for the caller to delete.
-- KEYS: conv, hist, lines, sent, open, stats, dead, timers (the desk's), then for each lane in ARGV:
--       its outbox, its ready queue, its lease
-- ARGV: cid, lane names...
-- Returns {keys deleted, history entries, dead letters, pending entries per lane (ARGV order)...,
--          "channel ts"...}
local cid = ARGV[1]
local lanes = #ARGV - 1
local threads = {}
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  if string.sub(fields[i], 1, 2) == 't:' then threads[#threads + 1] = fields[i + 1] end
end
local hist = redis.call('LLEN', KEYS[2])
local pending = {}
local doomed = {KEYS[1], KEYS[2], KEYS[3], KEYS[4]}
for n = 1, lanes do
  local out, ready, lease = KEYS[6 + n * 3], KEYS[7 + n * 3], KEYS[8 + n * 3]
  pending[n] = redis.call('XLEN', out)
  if pending[n] > 0 then redis.call('HINCRBY', KEYS[6], ARGV[n + 1], -pending[n]) end
  redis.call('ZREM', ready, cid)
  doomed[#doomed + 1] = out
  doomed[#doomed + 1] = lease
end
local dead, start = 0, '-'
while true do
  local batch = redis.call('XRANGE', KEYS[7], start, '+', 'COUNT', 500)
  if #batch == 0 then break end
  for _, entry in ipairs(batch) do
    local f = entry[2]
    for i = 1, #f, 2 do
      if f[i] == 'cid' then
        if f[i + 1] == cid then
          redis.call('XDEL', KEYS[7], entry[1])
          dead = dead + 1
        end
        break
      end
    end
  end
  start = '(' .. batch[#batch][1]
end
local deleted = redis.call('DEL', unpack(doomed))
redis.call('ZREM', KEYS[5], cid)
redis.call('ZREM', KEYS[8], cid)
local answer = {deleted, hist, dead}
for n = 1, lanes do answer[#answer + 1] = pending[n] end
for _, thread in ipairs(threads) do answer[#answer + 1] = thread end
return answer
