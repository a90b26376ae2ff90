-- POST /v1/vector/search: the bodies of $VEC_BODIES (one JSON body a
-- line), in turn, each wrk thread from its own place in the list.  Each
-- request is formatted once, in init(): wrk.format() of a 2 KiB body for
-- every request cost wrk about 45 us of CPU each (Lua strings and their
-- garbage), on the same two cores as the daemon it measures.
local bodies = {}
local path = os.getenv("VEC_BODIES") or error("VEC_BODIES is not set")
for line in io.lines(path) do
	bodies[#bodies + 1] = line
end
local requests = {}
local i = 0

setup = function(thread)
	thread:set("first", math.random(#bodies))
end

init = function(args)
	local headers = {["Content-Type"] = "application/json"}
	for j, body in ipairs(bodies) do
		requests[j] = wrk.format("POST", "/v1/vector/search", headers, body)
	end
	i = (first or 1) - 1
end

request = function()
	i = i % #requests + 1
	return requests[i]
end
