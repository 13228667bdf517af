from pyrovae.cli import main

main()
