# fish completion for kyro-put(1)
# Operands are keys and values, which are not completed: file names are off.
complete -c kyro-put -f
complete -c kyro-put -s h -l help -d 'Print the usage and exit'
complete -c kyro-put -l version -d 'Print the version and exit'
complete -c kyro-put -s d -l dir -x -a '(__fish_complete_directories (commandline -ct | string replace -r -- "^--dir=" ""))' -d 'Data directory'
complete -c kyro-put -s v -d 'Print a summary on standard error'
complete -c kyro-put -l sync -x -d 'When to fsync' -a '(printf "%s\t%s\n" \
	always "after every record and before exit" \
	batch "once before a successful exit (default)" \
	none "never")'
complete -c kyro-put -l print-offset -d "Print the batch's last sequence number"
complete -c kyro-put -l delete -d 'Delete the keys instead of putting values'
complete -c kyro-put -l replay -d 'Read kyro-get --changes --format=replay: one batch per source batch'
complete -c kyro-put -l vectors -d 'Put vectors: KEY VECTOR, or KEY<TAB>VECTOR lines on stdin'
complete -c kyro-put -l fvecs -F -d 'Put the vectors of an .fvecs file (default stdin)'
complete -c kyro-put -l first-key -x -d "With --fvecs: the first record's key"
