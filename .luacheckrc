std = "luajit"
max_line_length = 130
files["tests"] = { std = "+busted" }
files["bench"] = { std = "+luajit" }
exclude_files = { "tests/tmp/**" }
