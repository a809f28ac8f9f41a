module concord/porcupine-register

go 1.18

require github.com/anishathalye/porcupine v0.0.0

replace github.com/anishathalye/porcupine => ./porcupine
