# Source me to run a single spec by hand: . tests/env.sh; busted --lua=luajit tests/e2e/x_spec.lua
export LUA_PATH="$PWD/lua/?.lua;$PWD/lua/?/init.lua;$PWD/tests/?.lua;;"
export LUA_CPATH="$PWD/?.so;;"
