-- Forget one conversation (bridge forget, DELETE /admin/conversations/...): every key it has in its
-- partition, its place in the partition's queues and indexes, its pending counts and its dead letters.
-- Thread mappings live in other slots: their (channel ts) pairs are returned for the caller to delete.
-- KEYS: conv, hist, lines, out_slack, out_reply, ready_slack, ready_reply, open, stats, lease_slack,
--       lease_reply, dead, timers (the desk's), sent
-- ARGV: cid
-- Returns {keys deleted, history entries, slack entries, reply entries, dead letters, "channel ts"...}
local cid = ARGV[1]
local threads = {}
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  if string.sub(fields[i], 1, 2) == 't:' then threads[#threads + 1] = fields[i + 1] end
end
local hist = redis.call('LLEN', KEYS[2])
local pending = {slack = redis.call('XLEN', KEYS[4]), reply = redis.call('XLEN', KEYS[5])}
for lane, count in pairs(pending) do
  if count > 0 then redis.call('HINCRBY', KEYS[9], lane, -count) end
end
local dead, start = 0, '-'
while true do
  local batch = redis.call('XRANGE', KEYS[12], start, '+', 'COUNT', 500)
  if #batch == 0 then break end
  for _, entry in ipairs(batch) do
    local f = entry[2]
    for i = 1, #f, 2 do
      if f[i] == 'cid' then
        if f[i + 1] == cid then
          redis.call('XDEL', KEYS[12], entry[1])
          dead = dead + 1
        end
        break
      end
    end
  end
  start = '(' .. batch[#batch][1]
end
local deleted = redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[10], KEYS[11], KEYS[14])
for _, index in ipairs({KEYS[6], KEYS[7], KEYS[8], KEYS[13]}) do redis.call('ZREM', index, cid) end
return {deleted, hist, pending.slack, pending.reply, dead, unpack(threads)}
