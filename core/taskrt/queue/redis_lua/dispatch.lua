-- dispatch.lua: place queued runs in their queue, ready now or delayed until their due time.
--
-- KEYS[1]  queue:{q}:ready     list of run ids
-- KEYS[2]  queue:{q}:delayed   zset run id -> due time (Unix ms)
-- KEYS[3]  queue:{q}:inflight  zset run id -> lease deadline (Unix ms)
-- ARGV[1]  wake channel of the queue
-- ARGV[2..] pairs: run id, due time in Unix ms (0: ready now)
-- Returns: number of runs placed. A run already in flight is skipped (a relay or reconcile
-- repeating a dispatch must not hand one run to two workers). Publishes on the wake channel
-- when the ready list goes from empty to not empty, or when a new earliest delayed run appears.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ready = {}
local earliest = nil
local placed = 0
for i = 2, #ARGV, 2 do
  local id = ARGV[i]
  local due = tonumber(ARGV[i + 1])
  if not redis.call('ZSCORE', KEYS[3], id) then
    placed = placed + 1
    if due <= now then
      ready[#ready + 1] = id
    else
      redis.call('ZADD', KEYS[2], due, id)
      if earliest == nil or due < earliest then earliest = due end
    end
  end
end
local wake = false
if #ready > 0 then
  local length = redis.call('RPUSH', KEYS[1], unpack(ready))
  if length == #ready then wake = true end
end
if earliest ~= nil then
  local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  if first[2] and tonumber(first[2]) >= earliest then wake = true end
end
if wake then redis.call('PUBLISH', ARGV[1], 'w') end
return placed
