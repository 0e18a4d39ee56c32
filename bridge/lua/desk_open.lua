-- Open handovers of one partition, for the Home tab and the waiting gauge (bridge/desk/store.py).
-- KEYS: open   ARGV: conv_prefix, hist_prefix, excerpts ('1': also the last line the user typed)
-- Returns {{cid, state, header json, opened_at, first_response_at, user's last line, thread channel,
--           thread ts}, ...}
local rows = {}
for _, cid in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local c = redis.call('HMGET', ARGV[1] .. cid, 'state', 'header', 'opened_at', 'first_response_at',
    'thread_channel', 'thread_ts')
  if c[1] == 'open' or c[1] == 'claimed' then
    local said = ''
    if ARGV[3] == '1' then
      local past = redis.call('LRANGE', ARGV[2] .. cid, -10, -1)
      for i = #past, 1, -1 do
        local ok, entry = pcall(cjson.decode, past[i])
        if ok and type(entry) == 'table' and type(entry['in']) == 'string' and entry['in'] ~= '' then
          said = entry['in']
          break
        end
      end
    end
    rows[#rows + 1] = {cid, c[1], c[2] or '{}', c[3] or '0', c[4] or '', said, c[5] or '', c[6] or ''}
  end
end
return rows
