"""The job kinds (classify, summarise): prompts in, validated answers out. See jobs.base."""
