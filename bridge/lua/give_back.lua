-- A turn that could not be used: the conversation back in the channel's queue at its score (unless
-- it joined again meanwhile), and the token back in the bucket when it was not spent.
-- KEYS: bucket, queue   ARGV: cid|'', score, token ('1'|'0'), burst
if ARGV[1] ~= '' then redis.call('ZADD', KEYS[2], 'NX', ARGV[2], ARGV[1]) end
if ARGV[3] == '1' then give_token(KEYS[1], tonumber(ARGV[4])) end
return 1
