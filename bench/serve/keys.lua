-- keys.lua - the benchmark's key set, shared by the wrk scripts.
-- Key i (1..N) is (i * 48271) mod (2^31 - 1): a permutation of part of
-- [1, 2^31), spread uniformly, computed exactly in doubles, so wrk needs
-- no key file.  run.sh loads the same keys with the same formula (awk).
local M = {}
M.N = tonumber(os.getenv("KEYS") or "10000000")
function M.key(i) return (i * 48271) % 2147483647 end
function M.random_key() return M.key(math.random(1, M.N)) end
return M
