return function(plume) end
