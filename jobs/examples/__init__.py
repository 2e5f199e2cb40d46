"""Example job specs and the generator of their demo data (`python -m jobs.examples.make_data`)."""
