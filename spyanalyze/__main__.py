from spyanalyze.cli import main

main(prog_name="spyanalyze")
