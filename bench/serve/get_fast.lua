-- GET /v1/get_fast/{key} of a random present key.
package.path = os.getenv("BENCH_DIR") .. "/?.lua;" .. package.path
local keys = require("keys")
request = function()
	return wrk.format("GET", string.format("/v1/get_fast/%d", keys.random_key()))
end
