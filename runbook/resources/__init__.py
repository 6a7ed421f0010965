"""One class per AWS resource kind, each with the same contract (base.Resource): find,
a pure diff and plan, create, update, tag and delete. Steps list the resources they
want; they never find, adopt or tag by hand."""
