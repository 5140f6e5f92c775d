-- test_data_in.lua -- plume.read_csv (libcsv), plume.json.decode/encode and plume.read_json (cJSON): round
-- trips, missing values, quoting, big numbers, unicode, and errors that name the line and column.
local T = dofile("tests/lua/check.lua")

local dir = os.tmpname()
os.remove(dir)
os.execute("mkdir -p " .. dir)
local function write(name, text)
  local f = assert(io.open(dir .. "/" .. name, "wb"))
  f:write(text)
  f:close()
  return dir .. "/" .. name
end

T.test("read_csv_numeric_columns_are_arrays_and_strings_stay_strings", function()
  local cols, names = plume.read_csv(write("a.csv", "x,y,name\n1,2.5,a\n3,-4e-3,b\n5,6,c\n"))
  T.eq(table.concat(names, ","), "x,y,name", "names in file order")
  T.eq(getmetatable(cols.x).__name, "plume.array", "numeric column type")
  T.eq(#cols.x, 3)
  T.eq(cols.x[3], 5)
  T.eq(cols.y[2], -4e-3)
  T.eq(type(cols.name), "table")
  T.eq(cols.name[2], "b")
end)

T.test("read_csv_na_and_empty_are_nan", function()
  local cols = plume.read_csv(write("na.csv", "a,b,c\n1,NA,\n,2,3\nNaN,N/A,4\n"))
  T.ok(cols.a[2] ~= cols.a[2] and cols.a[3] ~= cols.a[3], "empty and NaN -> nan")
  T.ok(cols.b[1] ~= cols.b[1] and cols.b[3] ~= cols.b[3], "NA and N/A -> nan")
  T.ok(cols.c[1] ~= cols.c[1], "empty last field -> nan")
  T.eq(cols.a[1], 1); T.eq(cols.b[2], 2); T.eq(cols.c[3], 4)
end)

T.test("read_csv_quoted_fields_with_commas_quotes_and_newlines", function()
  local cols = plume.read_csv(write("q.csv", 'id,text\r\n1,"a, b"\r\n2,"say ""hi"""\r\n3,"two\nlines"\r\n'))
  T.eq(cols.text[1], "a, b")
  T.eq(cols.text[2], 'say "hi"')
  T.eq(cols.text[3], "two\nlines")
  T.eq(#cols.id, 3, "CRLF line ends")
end)

T.test("read_csv_big_numbers_and_a_utf8_bom", function()
  local cols = plume.read_csv(write("big.csv", "\xEF\xBB\xBFn,x\n9007199254740993,1e308\n-12345678901234567890,2.2250738585072014e-308\n"))
  T.eq(cols.n[1], 9007199254740992.0, "nearest double")
  T.eq(cols.n[2], -1.2345678901234567e19)
  T.eq(cols.x[1], 1e308)
  T.eq(cols.x[2], 2.2250738585072014e-308)
end)

T.test("read_csv_options_columns_header_sep", function()
  local path = write("o.csv", "a;b;c\n1;2;3\n4;5;6\n")
  local cols, names = plume.read_csv(path, { sep = ";", columns = { "c", 1 } })
  T.eq(table.concat(names, ","), "c,a")
  T.eq(cols.c[2], 6); T.eq(cols.a[1], 1); T.eq(cols.b, nil, "unselected column absent")
  local raw, rnames = plume.read_csv(write("nh.csv", "1,2\n3,4\n"), { header = false })
  T.eq(#rnames, 2); T.eq(raw[2][2], 4)
  T.raises(function() plume.read_csv(path, { sep = ";", columns = { "w" } }) end, "no column named 'w' (columns: a, b, c)")
  T.raises(function() plume.read_csv(path, { colums = {} }) end, "unknown option 'colums'")
end)

T.test("read_csv_malformed_input_names_line_and_column", function()
  T.raises(function() plume.read_csv(write("m1.csv", 'a,b\n1,2\n3,"4"x\n')) end, "m1.csv:3: malformed field at column 2")
  T.raises(function() plume.read_csv(write("m2.csv", "a,b\n1,2\n3,4,5\n")) end, "m2.csv:3: the record has 3 fields, but the first has 2")
  T.raises(function() plume.read_csv(write("m3.csv", 'a,b\n1,2\n3,"4\n5,6\n')) end, "m3.csv:3: a quoted field")
  T.raises(function() plume.read_csv(write("m4.csv", "")) end, "the file is empty")
  T.raises(function() plume.read_csv(write("m5.csv", "a,a\n1,2\n")) end, "two columns are named 'a'")
  T.raises(function() plume.read_csv(dir .. "/none.csv") end, "cannot open")
end)

T.test("read_csv_many_rows", function()
  local lines = { "t,y" }
  for i = 1, 20000 do lines[#lines + 1] = i .. "," .. (i * 0.5) end
  local cols = plume.read_csv(write("many.csv", table.concat(lines, "\n") .. "\n"))
  T.eq(#cols.t, 20000); T.eq(cols.y[20000], 10000); T.eq(cols.t:sum(), 20000 * 20001 / 2)
end)

T.test("json_round_trip", function()
  local v = { name = "plume", n = 3, xs = { 1, 2.5, -1e-300, 1e300 }, nested = { ok = true, no = false, list = {} },
              big = math.maxinteger, neg = math.mininteger, s = "tab\tquote\"back\\slash\ncontrol\1" }
  local back = plume.json.decode(plume.json.encode(v))
  T.eq(back.name, "plume"); T.eq(back.n, 3); T.eq(math.type(back.n), "integer")
  for i = 1, 4 do T.eq(back.xs[i], v.xs[i], "xs[" .. i .. "] exact") end
  T.eq(back.nested.ok, true); T.eq(back.nested.no, false); T.eq(#back.nested.list, 0)
  T.eq(back.s, v.s, "escapes")
  T.eq(plume.json.encode(math.maxinteger), "9223372036854775807", "64-bit integer printed exactly")
  T.eq(plume.json.encode({ 0.1 }), "[0.1]", "shortest form")
  T.eq(plume.json.decode(plume.json.encode({ x = 0.1 + 0.2 })).x, 0.1 + 0.2, "17 digits when needed")
end)

T.test("json_null_nan_and_arrays", function()
  local v = plume.json.decode('[1, null, 3]')
  T.eq(v[2], plume.json.null); T.eq(#v, 3)
  T.eq(plume.json.encode({ 1, plume.json.null, 0 / 0, math.huge }), "[1,null,null,null]", "no NaN in JSON")
  local a = plume.json.decode('{"y": [1, null, 2.5]}', { arrays = true }).y
  T.eq(getmetatable(a).__name, "plume.array"); T.ok(a[2] ~= a[2], "null -> nan in arrays"); T.eq(a[3], 2.5)
  T.eq(plume.json.encode(plume.array(2, 2, 1)), "[[1,1],[1,1]]", "a shaped array as rows")
end)

T.test("json_unicode_strings", function()
  local s = plume.json.decode('"caf\\u00e9 \\ud83d\\ude00 \u{4e2d}"')
  T.eq(s, "café 😀 中", "\\u escapes, surrogate pairs and raw UTF-8")
  T.eq(plume.json.decode(plume.json.encode({ k = "é中😀" })).k, "é中😀")
end)

T.test("json_errors_name_the_position", function()
  T.raises(function() plume.json.decode('{"a": [1, 2,\n  3,, 4]}') end, "invalid JSON at line 2, column 5")
  T.raises(function() plume.json.decode('{"a": 1} x') end, "line 1, column 10 (byte 10), near 'x'")
  T.raises(function() plume.json.decode('{"a": ') end, "unexpected end of input")
  T.raises(function() plume.json.encode({ f = print }) end, "cannot encode a function (at key 'f')")
  local t = {}; t.self = t
  T.raises(function() plume.json.encode(t) end, "nested deeper than")
  T.raises(function() plume.json.encode({ [true] = 1 }) end, "only strings and numbers")
  T.raises(function() plume.read_json(write("bad.json", '{\n "x": tru\n}')) end, "bad.json: invalid JSON at line 2")
end)

T.test("read_json_reads_the_bugs_data_sets", function()
  local rats = plume.read_json("examples/data/rats.json")
  T.eq(rats.N, 30); T.eq(#rats.Y, 30); T.eq(#rats.Y[1], 5); T.eq(rats.Y[1][1], 151); T.eq(rats.x[5], 36)
  local seeds = plume.read_json("examples/data/seeds.json", { arrays = true })
  T.eq(#seeds.r, seeds.N); T.eq(seeds.r:sum(), 424); T.eq(seeds.n:sum(), 831)
  local s8 = plume.read_json("examples/data/eight_schools.json")
  T.eq(s8.J, #s8.y); T.eq(s8.y[1], 28); T.eq(s8.sigma[8], 18)
end)

os.execute("rm -rf " .. dir)
