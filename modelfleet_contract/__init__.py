"""What the operator and the serving app agree on, in one place both import.

The operator (`modelfleet`) renders a fleet into Kubernetes objects and a Serve config; the serving app
(`serving_app`) runs inside the Ray pods they start. Neither imports the other: every fact that crosses
between them lives here, once.

- `wire`: ports, application names and import paths, environment variables, mount paths, the routing
  header, the public routes, the names a model may not take;
- `tasks`: what each task answers, and which task each name a request may carry has;
- `errors`: the OpenAI-shaped errors and the texts both sides answer with;
- `routing`: the fleet's routes by model for HAProxy, and the wrapper scripts that run it;
- `args`: the `args` document of each Serve application (pydantic), which the renderer builds and the
  serving app validates.

Only the standard library is imported here, and pydantic by `args`: the serving image installs this
package without its dependencies, and the HAProxy wrapper imports `wire`, `errors` and `routing` each time
Ray (re)starts HAProxy.
"""
