"""The data contracts: the job spec (pydantic), Arrow schemas of the outputs, the price
table. A leaf: nothing here imports the engine or the job kinds."""

# Marks this package as tierline's own (pipeline.ownpackages checks it).
TIERLINE_PACKAGE = True
