# The conventional single answer, data.behavry.authz.decision =
# {result, reason, policy}, for anyone who queries the policies directly (an
# OPA deployment, a policy playground). Behavry itself combines the per-policy
# documents in Rust; both follow the same rules and are tested to agree:
#
#   * monitor-mode policies never count;
#   * deny beats escalate beats allow, and nothing allowing means deny;
#   * among the reasons for the winning result, tenant policies come before
#     built-in ones, then policy name, then reason text, so the answer is stable.
#
# Behavry appends `policy_meta := {<package name>: {id, name, monitor, builtin}}`
# when it compiles a tenant's policy set.
package behavry.authz

default decision := {
	"result": "deny",
	"reason": "no policy allows this request (default deny)",
	"policy": null,
}

decision := {
	"result": outcome,
	"reason": sprintf("%s (policy: %s)", [winner[2], display_name(winner[1])]),
	"policy": policy_id(winner[1]),
} if {
	winner := sort([[rank(f.policy), f.policy, f.reason] | some f in fired; f.kind == outcome])[0]
}

outcome := "deny" if {
	some f in fired
	f.kind == "deny"
} else := "escalate" if {
	some f in fired
	f.kind == "escalate"
} else := "allow" if {
	some f in fired
	f.kind == "allow"
}

fired contains {"policy": name, "kind": kind, "reason": reason} if {
	some name, document in data.behavry.policies
	not monitored(name)
	some kind in ["deny", "escalate", "allow"]
	some reason in reasons(document, kind)
}

# A rule is either a boolean or a collection of reasons (strings, or objects
# with a `reason`).
reasons(document, kind) := {default_reason[kind]} if document[kind] == true

reasons(document, kind) := {reason_text(item) | some item in document[kind]} if {
	not is_boolean(document[kind])
}

reason_text(item) := item if is_string(item)

reason_text(item) := item.reason if is_object(item)

default_reason := {
	"deny": "request denied",
	"escalate": "request needs a human's approval",
	"allow": "request allowed",
}

monitored(name) if policy_meta[name].monitor == true

rank(name) := 1 if {
	policy_meta[name].builtin == true
} else := 0

display_name(name) := policy_meta[name].name if {
	is_string(policy_meta[name].name)
} else := name

policy_id(name) := policy_meta[name].id if {
	is_string(policy_meta[name].id)
} else := name
