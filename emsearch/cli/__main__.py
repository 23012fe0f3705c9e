from emsearch.cli import main

main()
