-- Stopword lists for the embedded bm25 model (providers/bm25.lua), per Snowball language.
-- english: the Snowball project's English stop list (snowballstem.org, BSD licence), plus
-- the fragments rerankd's tokenizer makes of its contractions (it splits "don't" into
-- "don" and "t"). Languages without a list here have no stopwords unless the model's
-- `stopwords:` gives a list.
local M = {}

M.english = {
  "i", "me", "my", "myself", "we", "our", "ours", "ourselves", "you", "your", "yours",
  "yourself", "yourselves", "he", "him", "his", "himself", "she", "her", "hers", "herself",
  "it", "its", "itself", "they", "them", "their", "theirs", "themselves", "what", "which",
  "who", "whom", "this", "that", "these", "those", "am", "is", "are", "was", "were", "be",
  "been", "being", "have", "has", "had", "having", "do", "does", "did", "doing", "would",
  "should", "could", "ought", "cannot", "a", "an", "the", "and", "but", "if", "or",
  "because", "as", "until", "while", "of", "at", "by", "for", "with", "about", "against",
  "between", "into", "through", "during", "before", "after", "above", "below", "to", "from",
  "up", "down", "in", "out", "on", "off", "over", "under", "again", "further", "then",
  "once", "here", "there", "when", "where", "why", "how", "all", "any", "both", "each",
  "few", "more", "most", "other", "some", "such", "no", "nor", "not", "only", "own", "same",
  "so", "than", "too", "very",
  -- contraction fragments: i'm you're he's i've i'd i'll isn't aren't wasn't weren't
  -- hasn't haven't hadn't doesn't don't didn't won't wouldn't shan't shouldn't can't
  -- couldn't mustn't
  "m", "re", "s", "ve", "d", "ll", "t", "isn", "aren", "wasn", "weren", "hasn", "haven",
  "hadn", "doesn", "don", "didn", "wouldn", "shan", "shouldn", "can", "couldn", "mustn",
}
M.porter = M.english -- the original Porter stemmer is English too

return M
