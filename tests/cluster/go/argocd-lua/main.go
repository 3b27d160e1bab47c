// argocd-lua runs an Argo CD health check (health.lua) on Kubernetes objects the way Argo CD's
// util/lua does: gopher-lua (the interpreter Argo CD embeds), only the libraries Argo CD opens for an
// argocd-cm script without useOpenLibs (package, base, table; its "safe" os subset is left out), the object
// decoded into Lua tables as Argo CD's decodeValue does, and a one-second limit. For each object file it
// prints one JSON line: {"path", "status", "message"} or {"path", "error"}.
//
// Usage: argocd-lua health.lua object.yaml...
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	lua "github.com/yuin/gopher-lua"
	"sigs.k8s.io/yaml"
)

type result struct {
	Path    string `json:"path"`
	Status  string `json:"status,omitempty"`
	Message string `json:"message,omitempty"`
	Error   string `json:"error,omitempty"`
}

// decode turns a JSON-shaped value into Lua values: maps to tables keyed by string, lists to 1-based tables.
func decode(state *lua.LState, value any) lua.LValue {
	switch converted := value.(type) {
	case bool:
		return lua.LBool(converted)
	case float64:
		return lua.LNumber(converted)
	case int64:
		return lua.LNumber(converted)
	case string:
		return lua.LString(converted)
	case []any:
		list := state.CreateTable(len(converted), 0)
		for _, item := range converted {
			list.Append(decode(state, item))
		}
		return list
	case map[string]any:
		table := state.CreateTable(0, len(converted))
		for key, item := range converted {
			table.RawSetH(lua.LString(key), decode(state, item))
		}
		return table
	}
	return lua.LNil
}

func health(script string, object map[string]any) (map[string]string, error) {
	state := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer state.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
	} {
		call := lua.P{Fn: state.NewFunction(lib.open), NRet: 0, Protect: true}
		if err := state.CallByParam(call, lua.LString(lib.name)); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	state.SetContext(ctx)
	state.SetGlobal("obj", decode(state, object))
	if err := state.DoString(script); err != nil {
		return nil, err
	}
	returned := state.Get(-1)
	table, ok := returned.(*lua.LTable)
	if !ok {
		return nil, fmt.Errorf("expect table output from Lua script, not %s", returned.Type())
	}
	out := map[string]string{}
	table.ForEach(func(key, value lua.LValue) { out[key.String()] = value.String() })
	return out, nil
}

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: argocd-lua health.lua object.yaml...")
		os.Exit(2)
	}
	script, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	encoder := json.NewEncoder(os.Stdout)
	for _, path := range os.Args[2:] {
		line := result{Path: path}
		var object map[string]any
		raw, err := os.ReadFile(path)
		if err == nil {
			err = yaml.Unmarshal(raw, &object)
		}
		if err == nil {
			var hs map[string]string
			if hs, err = health(string(script), object); err == nil {
				line.Status, line.Message = hs["status"], hs["message"]
			}
		}
		if err != nil {
			line.Error = err.Error()
		}
		if err := encoder.Encode(line); err != nil {
			os.Exit(2)
		}
	}
}
