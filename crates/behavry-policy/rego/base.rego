# Behavry base pack: the defaults every tenant starts from.
#
# It follows the same convention as tenant policies (see README.md): `deny`,
# `escalate` and `allow` are sets of reasons, and the gateway combines all
# policies with deny > escalate > allow, denying whatever nothing allows. A
# tenant can therefore tighten anything here with its own deny or escalate
# rules, loosen it with its own allow rules, or switch the pack off entirely.
package behavry.policies.base

# Reading cannot change anything, and agents read constantly; requiring a grant
# for every read would only train people to grant everything.
allow contains "read-only tool" if input.request.action == "read"

# Changes and outgoing messages need an explicit grant on the agent, either for
# this MCP server ("filesystem:write") or for every server ("*:write"). Without
# one the pack has no opinion, so the request falls through to default deny.
allow contains reason if {
	input.request.action in {"write", "send"}
	some permission in input.agent.permissions
	permission in granting_permissions
	reason := sprintf("agent holds the %s permission", [permission])
}

granting_permissions contains sprintf("%s:%s", [input.request.mcp_server, input.request.action])

granting_permissions contains sprintf("*:%s", [input.request.action])

# Deleting and running arbitrary commands can do damage that no later check
# can undo, so a person looks first.
escalate contains reason if {
	input.request.action in {"delete", "execute"}
	reason := sprintf("%s actions need a human's approval", [input.request.action])
}

# Credentials and system configuration are off limits to agents no matter what
# they were granted: a leaked key or a changed /etc file outlives the session.
# Every string the request carries is checked, not just the main resource,
# because tools name their targets in many different parameters.
deny contains reason if {
	input.request.action in {"write", "delete"}
	mentions_sensitive_names(input.request)
	some path in request_strings(input.request)
	sensitive(trim_prefix(path, "file://"))
	reason := sprintf("%s of the sensitive path %s is not allowed", [input.request.action, path])
}

# Checking each string one by one is slow in an interpreter, so first look for
# the names below anywhere in the request's JSON text, in one pass. Every path
# `sensitive` matches contains one of them, so a request without any cannot
# match and skips the precise checks.
mentions_sensitive_names(request) if {
	text := json.marshal([object.get(request, "resource", null), object.get(request, "parameters", null)])
	some name in ["/etc", "/root", ".ssh", ".aws", ".config", ".env", "id_rsa", "id_ecdsa", "id_ed25519"]
	contains(text, name)
}

# A function rather than a rule: rules are evaluated for every request, and
# walking large arguments is wasted work when nothing is being written.
# Strings longer than the longest Linux path are file contents, not paths.
request_strings(request) := {value |
	walk([object.get(request, "resource", null), object.get(request, "parameters", null)], [_, value])
	is_string(value)
	count(value) <= 4096
}

# System configuration: the directory itself and everything below it
# ("/etc", "/etc/passwd", but not "/etcetera").
sensitive(path) if {
	some directory in ["/etc", "/root"]
	startswith(concat("", [path, "/"]), concat("", [directory, "/"]))
}

# Per-user credential and configuration directories, wherever the home
# directory is: "~/.ssh/id_rsa", "/home/alice/.aws/credentials", ".config/gh".
sensitive(path) if {
	some directory in [".ssh", ".aws", ".config"]
	contains(concat("", ["/", path, "/"]), concat("", ["/", directory, "/"]))
}

# Secret-bearing files wherever they live: dotenv files (".env",
# ".env.production") and private SSH keys.
sensitive(path) if {
	name := basename(path)
	some secret in [".env", "id_rsa", "id_ecdsa", "id_ed25519"]
	secret_file(name, secret)
}

secret_file(name, secret) if name == secret

secret_file(name, secret) if startswith(name, concat("", [secret, "."]))

basename(path) := name if {
	parts := split(path, "/")
	name := parts[count(parts) - 1]
}
