"""The job kinds (classify, summarise, generate, extract): prompts in, validated answers out.
See jobs.base."""

# Marks this package as tierline's own (pipeline.ownpackages checks it).
TIERLINE_PACKAGE = True
