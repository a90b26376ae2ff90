-- POST /v1/vector/search: the bodies of $VEC_BODIES (one JSON body a
-- line), in turn, each wrk thread from its own place in the list.
local bodies = {}
for line in io.lines(os.getenv("VEC_BODIES")) do
	bodies[#bodies + 1] = line
end
local i = 0
local headers = {["Content-Type"] = "application/json"}

setup = function(thread)
	thread:set("first", math.random(#bodies))
end

init = function(args)
	i = (first or 1) - 1
end

request = function()
	i = i % #bodies + 1
	return wrk.format("POST", "/v1/vector/search", headers, bodies[i])
end
