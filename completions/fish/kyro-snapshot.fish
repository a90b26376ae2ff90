# fish completion for kyro-snapshot(1)
# The tool takes no operands, so file names are turned off.
complete -c kyro-snapshot -f
complete -c kyro-snapshot -s h -l help -d 'Print the usage and exit'
complete -c kyro-snapshot -l version -d 'Print the version and exit'
complete -c kyro-snapshot -s d -l dir -x -a '(__fish_complete_directories (commandline -ct | string replace -r -- "^--dir=" ""))' -d 'Data directory'
complete -c kyro-snapshot -s v -d 'Print a summary on standard error'
complete -c kyro-snapshot -l rmi -d 'Also build the learned index'
complete -c kyro-snapshot -l retain -x -d 'Keep folded WAL segments within SIZE and/or DURATION'
