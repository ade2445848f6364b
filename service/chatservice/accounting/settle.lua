-- The end of a request admitted by admit.lua: tokens limits move by the used-minus-reserved
-- difference, concurrent leases end.
-- KEYS: one per limit. ARGV: token delta, lease id, then per limit: kind (r, t, c), limit.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local delta = tonumber(ARGV[1])
local lease = ARGV[2]
for i, key in ipairs(KEYS) do
  local kind = ARGV[1 + 2 * i]
  local limit = tonumber(ARGV[2 + 2 * i])
  if kind == 'c' then
    redis.call('ZREM', key, lease)
  elseif kind == 't' and delta ~= 0 then
    local tat = tonumber(redis.call('GET', key)) or now
    if tat < now then tat = now end
    local new_tat = tat + delta * (60000 / limit)
    if new_tat > now then
      redis.call('SET', key, tostring(new_tat), 'PX', math.ceil(new_tat - now) + 1)
    else
      redis.call('DEL', key)
    end
  end
end
return 1
