-- POST /v1/vector/search: the bodies of $VEC_BODIES (one JSON body a
-- line), in turn, each wrk thread from its own place in the list.  Each
-- request is formatted once, in init(): wrk.format() of a 2 KiB body for
-- every request cost wrk about 45 us of CPU each (Lua strings and their
-- garbage), on the same two cores as the daemon it measures.  Only the
-- threads' Lua states read the file: wrk runs this script in one more
-- state, for setup(), which needs no bodies.
local path = os.getenv("VEC_BODIES") or error("VEC_BODIES is not set")
local requests = {}
local n, i = 0, 0

setup = function(thread)
	thread:set("seed", math.random(2147483647))
end

init = function(args)
	local headers = {["Content-Type"] = "application/json"}
	for line in io.lines(path) do
		n = n + 1
		requests[n] = wrk.format("POST", "/v1/vector/search", headers, line)
	end
	if n == 0 then
		error(path .. " holds no bodies")
	end
	i = (seed or 0) % n
end

request = function()
	i = i % n + 1
	return requests[i]
end
