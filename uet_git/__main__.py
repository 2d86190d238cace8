from uet_git.cli import main

main()
