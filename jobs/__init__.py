"""wardflow's PyFlink jobs and the tools that feed them."""
