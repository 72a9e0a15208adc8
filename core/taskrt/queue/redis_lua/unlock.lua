-- unlock.lua: release a lock only if it still holds this holder's value.
--
-- KEYS[1]  taskrt:lock:<name>  string, the holder's value, with an expiry
-- ARGV[1]  the holder's value
-- Returns: 1 if released, 0 if the lock had expired or another holder had taken it.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
