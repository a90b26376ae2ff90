-- POST /v1/lookup_batch of 100 random present keys.  The bodies are made
-- up front (1000 of them, cycled) so that wrk's Lua does not become the
-- bottleneck being measured.
package.path = os.getenv("BENCH_DIR") .. "/?.lua;" .. package.path
local keys = require("keys")
local headers = {["Content-Type"] = "application/json"}
local bodies, n = {}, 0
init = function(args)
	for b = 1, 1000 do
		local t = {}
		for j = 1, 100 do t[j] = string.format("%d", keys.random_key()) end
		bodies[b] = '{"keys":[' .. table.concat(t, ",") .. ']}'
	end
end
request = function()
	n = n % #bodies + 1
	return wrk.format("POST", "/v1/lookup_batch", headers, bodies[n])
end
