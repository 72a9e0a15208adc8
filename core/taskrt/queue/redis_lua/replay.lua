-- replay.lua: take replayed tasks out of the dead-letter list and make their new runs ready.
--
-- KEYS[1]  queue:{q}:dlq       list of dead-lettered task ids
-- KEYS[2]  queue:{q}:ready     list of run ids
-- ARGV[1]  wake channel of the queue
-- ARGV[2..] pairs: task id, new run id
-- Returns: number of runs made ready.
local ids = {}
for i = 2, #ARGV, 2 do
  redis.call('LREM', KEYS[1], 0, ARGV[i])
  ids[#ids + 1] = ARGV[i + 1]
end
if #ids == 0 then return 0 end
local length = redis.call('RPUSH', KEYS[2], unpack(ids))
if length == #ids then redis.call('PUBLISH', ARGV[1], 'w') end
return #ids
