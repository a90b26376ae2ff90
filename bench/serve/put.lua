-- POST /v1/put of a random key (of the same key space) with a 16-byte value.
package.path = os.getenv("BENCH_DIR") .. "/?.lua;" .. package.path
local keys = require("keys")
local headers = {["Content-Type"] = "application/json"}
request = function()
	local k = keys.random_key()
	return wrk.format("POST", "/v1/put", headers,
		string.format('{"key":%d,"value":"put-%012d"}', k, k % 1000000000000))
end
