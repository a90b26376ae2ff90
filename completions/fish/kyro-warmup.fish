# fish completion for kyro-warmup(1)
# The tool takes no operands, so file names are turned off.
complete -c kyro-warmup -f
complete -c kyro-warmup -s h -l help -d 'Print the usage and exit'
complete -c kyro-warmup -l version -d 'Print the version and exit'
complete -c kyro-warmup -s d -l dir -x -a '(__fish_complete_directories (commandline -ct | string replace -r -- "^--dir=" ""))' -d 'Data directory'
complete -c kyro-warmup -s v -d 'Report megabytes and time'
